"""Reading the user's CSV tables, with one clear error line naming the file when that fails."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctcimg.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


def read_csv_table(path: str | Path, **read_csv_options: Any) -> pd.DataFrame:
    """``pandas.read_csv(path, **read_csv_options)``, with bad input as an :class:`InputError`.

    A missing file, an unreadable one, and one pandas cannot parse or convert to the
    requested dtypes (all ``ValueError`` subclasses in pandas) each become one line naming
    the file and the problem; anything else (a bug) propagates unchanged.

    Parameters
    ----------
    path
        The CSV file.
    **read_csv_options
        Passed to :func:`pandas.read_csv` (``dtype``, ``nrows``, ...).

    Returns
    -------
    pandas.DataFrame
        The table as pandas reads it.

    Examples
    --------
    >>> read_csv_table("no-such-table.csv")
    Traceback (most recent call last):
    ...
    ctcimg.errors.InputError: no-such-table.csv: file not found
    """
    import pandas as pd

    path = Path(path)
    try:
        return pd.read_csv(path, **read_csv_options)
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except OSError as err:
        raise InputError(f"cannot read ({err.strerror or type(err).__name__})", path) from None
    except ValueError as err:  # pandas' ParserError, EmptyDataError, dtype conversion; bad UTF-8
        text = str(err).strip()
        problem = text.splitlines()[0] if text else type(err).__name__
        raise InputError(f"cannot read as CSV: {problem}", path) from None
