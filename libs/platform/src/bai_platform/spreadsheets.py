"""CSV cells that spreadsheets would run as formulas (OWASP "CSV injection")."""

import re

# Also matches cells that already start with quotes before a formula character, so that
# "'=x" is written as "''=x" and an import that drops one quote gives back "'=x".
_FORMULA = re.compile(r"'*[=+\-@\t\r]")


def neutralise(cell: str) -> str:
    """Prefix a single quote to a cell starting with =, +, -, @, tab or carriage return
    (after any quotes), so a spreadsheet shows it as text instead of running it."""
    return "'" + cell if _FORMULA.match(cell) else cell
