"""The emulated PC: Unicorn CPU, memory map, interrupt delivery, clock, devices."""
