; Bench: 64 MiB through AH=42h in 127-sector calls (the largest count iPXE-style EDD and GRUB use).
%define NAME "ext127"
PER_CALL equ 127
TOTAL    equ 131072
%include "bench.inc"
