"""Agent handlers: plain async functions, event in, events out."""
