from nbdboot.cli import entry

entry()
