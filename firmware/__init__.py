"""The BIOS ROM: NASM source and its committed build output."""
