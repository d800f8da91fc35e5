"""``python -m loongrl.report``: see ``loongrl.report.assemble``."""

from loongrl.report.assemble import main

main()
