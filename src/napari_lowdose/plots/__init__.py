"""Matplotlib figures of the analyses (no pyplot state, no Qt): CLI and docs."""
