"""Screen rendering and keyboard input for the guest console."""
