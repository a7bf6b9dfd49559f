"""Chat features built on the call lifecycle: streaming (`streaming`) and structured output (`structured`)."""
