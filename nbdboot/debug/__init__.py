"""Debugging aids: int 13h logs, instruction traces, crash reports, gdb stub."""
