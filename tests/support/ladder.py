"""The boot ladder: each rung's image, its media and the texts its screen must show (the last is the one waited for).

QEMU+SeaBIOS proves the recipes (test_reference_ladder.py), nbdboot boots the same rungs (test_ladder_nbdboot.py),
and the ladder benches time them.
"""

# rung: (image, media, texts that must all be on the screen)
LADDER = {
    "L2-syslinux-hdd": ("l2-syslinux", "hdd", ["NBDBOOT-L2 SYSLINUX from a hard disk", "boot:"]),
    "L3-chain-freedos": ("l3-chain-freedos", "hdd", ["NBDBOOT-L3 C:\\>"]),
    "L4-memdisk-floppy": ("l4-memdisk", "hdd", ["Welcome to FreeDOS", "A:\\>"]),
    "L5-isolinux-cd": ("l5-isolinux", "cd", ["ISOLINUX", "NBDBOOT-L5 ISOLINUX from a CD", "boot:"]),  # plain ISO
    "L6-grub-hdd": ("l6-grub", "hdd", ["GNU GRUB", "grub>"]),
    "L7-grub-cd": ("l7-grub", "cd", ["GNU GRUB", "grub>"]),  # the L6 image (a hybrid ISO) presented as a CD
}
