"""BIOS services, one module per interrupt, behind a dispatcher."""
