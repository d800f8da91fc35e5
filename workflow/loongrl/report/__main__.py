"""``python -m loongrl.report``: see ``loongrl.report.assemble``."""

from loongrl.cli import run
from loongrl.report.assemble import main

run(main)
