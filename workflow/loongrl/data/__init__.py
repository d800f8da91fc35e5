"""The data half: raw multi-hop QA -> difficulty filter -> split -> long-context filling -> KeyChain, plus the
Book-RULER retrieval and math sources, assembled into one training mixture per GRPO stage.

Modules here import only the core (``loongrl.*`` top-level modules), never ``train``, ``eval`` or ``report``.
"""
