#!/usr/bin/env Rscript
# Reference values from R `survival` for ctcimg.stats (tests/test_stats_r_agreement.py).
#
# Run from the repository root:   Rscript scripts/r/survival_reference.R
# Writes tests/data/survival/<dataset>.csv (the exact data used, cleaned) and
# tests/data/survival/<dataset>.json (Cox, Kaplan-Meier, quantiles, log-rank).
#
# Cox fits use a tight convergence criterion (eps 1e-12) so the comparison tests the
# estimator, not R's stopping rule. Profile-likelihood CIs are not built into coxph:
# they are computed here by root-finding (uniroot) on the profile log-likelihood,
# refitting with the coefficient fixed through an offset() term.
suppressPackageStartupMessages({library(survival); library(jsonlite)})

out <- file.path("tests", "data", "survival")
dir.create(out, showWarnings = FALSE, recursive = TRUE)
ctl <- coxph.control(eps = 1e-12, iter.max = 200, toler.chol = 1e-13)
zq <- qchisq(0.95, 1)

datasets <- list()
d <- na.omit(survival::lung[, c("time", "status", "age", "sex", "ph.ecog")])
d$status <- d$status - 1
d$sex <- factor(ifelse(d$sex == 1, "male", "female"), levels = c("male", "female"))
datasets$lung <- list(data = d, time = "time", event = "status",
                      models = list(c("sex"), c("age", "sex", "ph.ecog")),
                      groups = list(NULL, "sex"), logrank = c("sex"))
d <- survival::veteran[, c("time", "status", "trt", "celltype", "karno", "age", "prior")]
d$trt <- factor(ifelse(d$trt == 1, "standard", "test"), levels = c("standard", "test"))
datasets$veteran <- list(data = d, time = "time", event = "status",
                         models = list(c("celltype"), c("trt", "celltype", "karno", "age")),
                         groups = list("celltype", "trt"), logrank = c("celltype", "trt"))
d <- survival::ovarian[, c("futime", "fustat", "age", "resid.ds", "rx", "ecog.ps")]
datasets$ovarian <- list(data = d, time = "futime", event = "fustat",
                         models = list(c("rx"), c("age", "rx", "ecog.ps", "resid.ds")),
                         groups = list(NULL, "rx"), logrank = c("rx"))
d <- survival::aml
d$x <- factor(as.character(d$x), levels = c("Maintained", "Nonmaintained"))
datasets$aml <- list(data = d, time = "time", event = "status",
                     models = list(c("x")), groups = list(NULL, "x"), logrank = c("x"))
d <- subset(survival::colon, etype == 2)[, c("time", "status", "rx", "sex", "age", "nodes")]
d <- na.omit(d)
d$rx <- factor(as.character(d$rx), levels = c("Obs", "Lev", "Lev+5FU"))
datasets$colon <- list(data = d, time = "time", event = "status",
                       models = list(c("rx"), c("rx", "sex", "age", "nodes")),
                       groups = list("rx"), logrank = c("rx"))

surv_formula <- function(spec, rhs) {
  as.formula(paste0("Surv(", spec$time, ", ", spec$event, ") ~ ", rhs))
}

profile_ci <- function(spec, X, y, ties, j, bhat, se, llmax) {
  fixed <- X[, j]
  others <- X[, -j, drop = FALSE]
  ll <- function(b) {
    off <- b * fixed
    if (ncol(others) == 0) {
      f <- coxph(y ~ offset(off), ties = ties, control = ctl)
    } else {
      f <- coxph(y ~ others + offset(off), ties = ties, control = ctl)
    }
    tail(f$loglik, 1)
  }
  g <- function(b) 2 * (llmax - ll(b)) - zq
  root <- function(dir) {
    k <- 2
    while (g(bhat + dir * k * se) < 0) {
      k <- k * 2
      if (k > 1000) return(dir * Inf)
    }
    uniroot(g, sort(c(bhat, bhat + dir * k * se)), tol = 1e-13)$root
  }
  c(root(-1), root(1))
}

cox_ref <- function(spec, covs, ties) {
  d <- spec$data
  y <- Surv(d[[spec$time]], d[[spec$event]])
  fit <- coxph(surv_formula(spec, paste(covs, collapse = " + ")), data = d,
               ties = ties, control = ctl, x = TRUE)
  X <- fit$x
  b <- unname(coef(fit))
  se <- unname(sqrt(diag(fit$var)))
  z <- qnorm(0.975)
  prof <- t(sapply(seq_along(b), function(j)
    profile_ci(spec, X, y, ties, j, b[j], se[j], fit$loglik[2])))
  k <- length(b)
  list(covariates = covs, ties = ties, terms = colnames(X),
       coef = b, se = se, hr = exp(b), p = 2 * pnorm(-abs(b / se)),
       wald_lower = exp(b - z * se), wald_upper = exp(b + z * se),
       confint_lower = exp(unname(confint(fit)[, 1])),
       profile_lower = exp(prof[, 1]), profile_upper = exp(prof[, 2]),
       loglik_null = fit$loglik[1], loglik = fit$loglik[2],
       lr = list(statistic = 2 * diff(fit$loglik), df = k,
                 p = pchisq(2 * diff(fit$loglik), k, lower.tail = FALSE)),
       wald = list(statistic = unname(fit$wald.test), df = k,
                   p = pchisq(unname(fit$wald.test), k, lower.tail = FALSE)),
       score = list(statistic = unname(fit$score), df = k,
                    p = pchisq(unname(fit$score), k, lower.tail = FALSE)),
       n = fit$n, nevent = fit$nevent)
}

km_ref <- function(spec, group, conf_type) {
  d <- spec$data
  rhs <- if (is.null(group)) "1" else group
  fit <- survfit(surv_formula(spec, rhs), data = d, conf.type = conf_type)
  strata <- if (is.null(fit$strata)) list(fit) else lapply(seq_along(fit$strata),
                                                               function(i) fit[i])
  labels <- if (is.null(fit$strata)) "all" else sub("^[^=]*=", "", names(fit$strata))
  q <- quantile(fit, probs = c(0.25, 0.5, 0.75))
  qm <- function(m) if (is.matrix(m)) m else matrix(m, nrow = 1)
  tab <- summary(fit)$table
  if (!is.matrix(tab)) tab <- matrix(tab, nrow = 1, dimnames = list(NULL, names(tab)))
  curves <- lapply(seq_along(strata), function(i) {
    s <- strata[[i]]
    list(group = labels[i], time = s$time, n_risk = s$n.risk, n_event = s$n.event,
         n_censor = s$n.censor, surv = s$surv, std_err = s$std.err,
         lower = s$lower, upper = s$upper,
         quantile = qm(q$quantile)[i, ], quantile_lower = qm(q$lower)[i, ],
         quantile_upper = qm(q$upper)[i, ],
         median = unname(tab[i, "median"]),
         median_lower = unname(tab[i, grep("LCL", colnames(tab))]),
         median_upper = unname(tab[i, grep("UCL", colnames(tab))]))
  })
  list(group = group, conf_type = conf_type, curves = curves)
}

logrank_ref <- function(spec, group) {
  d <- spec$data
  sd <- survdiff(surv_formula(spec, group), data = d)
  df <- sum(sd$exp > 0) - 1
  list(group = group, groups = sub("^[^=]*=", "", names(sd$n)), chisq = sd$chisq,
       df = df, p = pchisq(sd$chisq, df, lower.tail = FALSE),
       observed = unname(sd$obs), expected = unname(sd$exp), var = unname(sd$var))
}

for (name in names(datasets)) {
  spec <- datasets[[name]]
  d <- spec$data
  write.csv(d, file.path(out, paste0(name, ".csv")), row.names = FALSE)
  levels <- lapply(Filter(is.factor, d), levels)
  res <- list(dataset = name, time = spec$time, event = spec$event,
              levels = levels,
              survival_version = as.character(packageVersion("survival")),
              cox = list(), km = list(), logrank = list())
  for (covs in spec$models) for (ties in c("breslow", "efron"))
    res$cox[[length(res$cox) + 1]] <- cox_ref(spec, covs, ties)
  for (g in c(spec$groups)) for (ct in c("log", "log-log", "plain"))
    res$km[[length(res$km) + 1]] <- km_ref(spec, g, ct)
  if (is.null(spec$groups[[1]])) NULL
  for (g in spec$logrank) res$logrank[[length(res$logrank) + 1]] <- logrank_ref(spec, g)
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, na = "string", null = "null",
                    pretty = FALSE),
             file.path(out, paste0(name, ".json")))
  cat("wrote", name, "\n")
}
