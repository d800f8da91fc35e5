"""Arrow schemas shared across stages: the raw QA row, chat messages and the training-mixture row.

The mixture schema is what GRPO trains on and also what the stage-I validation slice (built by the eval half) and
the stage-II selection write, so it lives here rather than in the stage that first produced it.
"""

from __future__ import annotations

import pyarrow as pa

DOC_TYPE = pa.struct([("title", pa.string()), ("text", pa.string())])
# The identity and target of a question; every QA table downstream starts with these columns.
QA_FIELDS = [
    pa.field("id", pa.string()),
    pa.field("dataset", pa.string()),
    pa.field("question", pa.string()),
    pa.field("answers", pa.list_(pa.string())),
]
QA_SCHEMA = pa.schema(QA_FIELDS)  # what a stage reading QA rows checks at read time (io.read_parquet)
RAW_SCHEMA = pa.schema([*QA_FIELDS, ("documents", pa.list_(DOC_TYPE)), ("gold_titles", pa.list_(pa.string()))])

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MIXTURE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("data_source", pa.string()),
        ("source", pa.string()),
        ("prompt", pa.list_(MESSAGE)),
        ("answers", pa.list_(pa.string())),
        ("prompt_tokens", pa.int32()),
        ("pass_rate", pa.float64()),
    ]
)
