#!/usr/bin/env Rscript
# Reference values from R `survival` for the checks after a Cox fit and for the
# extra Kaplan-Meier summaries (tests/test_stats_r_checks.py):
#   cox.zph (transforms km, rank, identity; per term and global), concordance(),
#   survdiff(rho = 0, 0.5, 1) (Fleming-Harrington G-rho), restricted mean survival
#   (print.survfit's rmean, with its standard error), per data set.
#
# Run from the repository root:   Rscript scripts/r/survival_checks_reference.R
# Reads tests/data/survival/<dataset>.csv (written by survival_reference.R, plus
# whas500.csv and camis_lung.csv, which come from the CAMIS project) and writes
# tests/data/survival/<dataset>_checks.json. Needs only survival and jsonlite
# (Debian: r-cran-survival, r-cran-jsonlite).
suppressPackageStartupMessages({library(survival); library(jsonlite)})

dir <- file.path("tests", "data", "survival")
ctl <- coxph.control(eps = 1e-12, iter.max = 200, toler.chol = 1e-13)

specs <- list(
  lung = list(time = "time", event = "status", levels = list(sex = c("male", "female")),
              models = list(c("sex"), c("age", "sex", "ph.ecog")), groups = c("sex"),
              tau = c(365, 730)),
  veteran = list(time = "time", event = "status",
                 levels = list(trt = c("standard", "test"),
                               celltype = c("squamous", "smallcell", "adeno", "large")),
                 models = list(c("trt", "celltype", "karno", "age")),
                 groups = c("celltype", "trt"), tau = c(200, 500)),
  ovarian = list(time = "futime", event = "fustat", levels = list(),
                 models = list(c("age", "rx", "ecog.ps", "resid.ds")), groups = c("rx"),
                 tau = c(700)),
  colon = list(time = "time", event = "status",
               levels = list(rx = c("Obs", "Lev", "Lev+5FU")),
               models = list(c("rx", "sex", "age", "nodes")), groups = c("rx"),
               tau = c(1000, 2500)),
  whas500 = list(time = "lenfol", event = "fstat", levels = list(),
                 models = list(c("afb"), c("afb", "gender", "age")),
                 groups = c("afb", "gender"), tau = c(365, 1500)),
  camis_lung = list(time = "time", event = "event", levels = list(),
                    models = list(c("trt01pn")), groups = c("trt01pn"), tau = c(350))
)

read_data <- function(name, spec) {
  d <- read.csv(file.path(dir, paste0(name, ".csv")))
  if (name == "camis_lung") d$event <- 1 - d$cnsr
  for (v in names(spec$levels)) d[[v]] <- factor(d[[v]], levels = spec$levels[[v]])
  d
}

fml <- function(spec, rhs) as.formula(paste0("Surv(", spec$time, ", ", spec$event, ") ~ ", rhs))

for (name in names(specs)) {
  spec <- specs[[name]]
  d <- read_data(name, spec)
  res <- list(dataset = name, time = spec$time, event = spec$event,
              survival_version = as.character(packageVersion("survival")),
              zph = list(), concordance = list(), survdiff = list(), rmean = list())
  for (covs in spec$models) for (ties in c("breslow", "efron")) {
    fit <- coxph(fml(spec, paste(covs, collapse = " + ")), data = d, ties = ties,
                 control = ctl)
    for (tr in c("km", "rank", "identity")) {
      z <- cox.zph(fit, transform = tr)
      res$zph[[length(res$zph) + 1]] <- list(
        covariates = covs, ties = ties, transform = tr, terms = rownames(z$table),
        chisq = unname(z$table[, "chisq"]), df = unname(z$table[, "df"]),
        p = unname(z$table[, "p"]))
    }
    cc <- concordance(fit)
    res$concordance[[length(res$concordance) + 1]] <- list(
      covariates = covs, ties = ties, concordance = unname(cc$concordance),
      concordant = unname(cc$count["concordant"]), discordant = unname(cc$count["discordant"]),
      tied_x = unname(cc$count["tied.x"]), tied_y = unname(cc$count["tied.y"]))
  }
  for (g in spec$groups) for (rho in c(0, 0.5, 1)) {
    sd <- survdiff(fml(spec, g), data = d, rho = rho)
    df <- sum(sd$exp > 0) - 1
    res$survdiff[[length(res$survdiff) + 1]] <- list(
      group = g, rho = rho, chisq = sd$chisq, df = df,
      p = pchisq(sd$chisq, df, lower.tail = FALSE),
      observed = unname(sd$obs), expected = unname(sd$exp))
  }
  for (g in c("1", spec$groups)) for (tau in spec$tau) {
    fit <- survfit(fml(spec, g), data = d)
    tab <- summary(fit, rmean = tau)$table
    if (!is.matrix(tab)) tab <- matrix(tab, nrow = 1, dimnames = list("all", names(tab)))
    labels <- if (is.null(fit$strata)) "all" else sub("^[^=]*=", "", names(fit$strata))
    res$rmean[[length(res$rmean) + 1]] <- list(
      group = if (g == "1") NULL else g, tau = tau, groups = labels,
      rmean = unname(tab[, "rmean"]), se = unname(tab[, "se(rmean)"]))
  }
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, na = "string", null = "null"),
             file.path(dir, paste0(name, "_checks.json")))
  cat("wrote", name, "\n")
}
