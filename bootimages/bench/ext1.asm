; Bench: single-sector sequential reads through AH=42h (the per-call cost: DOS-style small reads).
%define NAME "ext1"
PER_CALL equ 1
TOTAL    equ 16384
%include "bench.inc"
