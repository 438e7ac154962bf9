"""The lowering of each op family to its kernel, one module per family as in
firmware/kernels/ (conv.c, fully_connected.c, ...): a function per op kind, taking the
`Lowering` and the op, that checks what the kernel supports and appends the kernel call."""
