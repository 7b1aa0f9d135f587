"""The benchmark suite, ``python -m bench``: clew against LangGraph's savers and the storage floor."""
