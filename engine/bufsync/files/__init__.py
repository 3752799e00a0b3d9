"""Files (CSV, .xlsx) into and out of the buffer tables: reading a header and streamed rows (read), cells as
the portable types' values (values), writing files Russian Excel opens right (write). No database here."""

from bufsync.files.read import FileProblem, Sheet, open_sheet
from bufsync.files.values import BadCell, parse_cell
from bufsync.files.write import write_sheet

__all__ = ["BadCell", "FileProblem", "Sheet", "open_sheet", "parse_cell", "write_sheet"]
