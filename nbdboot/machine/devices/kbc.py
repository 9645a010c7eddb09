"""The 8042 keyboard controller (data port 60h, status/command port 64h)."""

from __future__ import annotations


class Keyboard8042:
    def __init__(self):
        self.output: list[int] = []
        self.command = None
        self.output_port = 0x03  # A20 on, no reset
        self.command_byte = 0x45

    def attach(self, bus) -> None:
        bus.register((0x60,), lambda port: self.read_data(), lambda port, v: self.write_data(v), "8042")
        bus.register((0x64,), lambda port: self.status(), lambda port, v: self.write_command(v), "8042")

    def status(self) -> int:
        return 0x14 | (1 if self.output else 0)  # system flag, keyboard unlocked

    def read_data(self) -> int:
        if self.output:
            value = self.output[0]
            if len(self.output) > 1:
                self.output.pop(0)
            return value
        return 0

    def write_command(self, value: int) -> None:
        if value in (0xD1, 0x60):
            self.command = value
        elif value == 0xD0:
            self.output = [self.output_port]
        elif value == 0x20:
            self.output = [self.command_byte]
        elif value == 0xAA:
            self.output = [0x55]
        elif value == 0xAB:
            self.output = [0x00]
        elif value in (0xDD, 0xDF):
            self.output_port |= 0x02
        # ADh/AEh (disable/enable keyboard), FFh (pulse) are accepted silently

    def write_data(self, value: int) -> None:
        if self.command == 0xD1:
            self.output_port = value | 0x02  # A20 cannot be turned off in Unicorn
        elif self.command == 0x60:
            self.command_byte = value
        else:
            self.output = [0xFA]  # ACK whatever the keyboard is told
        self.command = None
