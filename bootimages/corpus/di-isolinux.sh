#!/bin/sh
# Lays out an ISOLINUX CD tree from debian-installer-12-netboot-i386's netboot tree.
# usage: di-isolinux.sh NETBOOT_TREE ISOLINUX_BIN SYSLINUX_MODULES OUT_DIR
# The netboot tree's pxelinux.cfg/default becomes isolinux.cfg at the root (so its relative paths hold), menu.c32
# replaces vesamenu.c32 as the menu (the tests read the text screen; vesamenu draws in a VESA mode), and the
# Install entry gets vga=normal without `quiet` so the kernel's messages stay on a text console (and no-scroll,
# so that they stay at B8000h where the tests read the screen, and nomodeset: sl-di.cfg says why). The EFI files
# and the GRUB tree are left out: this CD boots through the BIOS only.
set -eu
tree=$1 isolinux=$2 modules=$3 out=$4
boot=debian-installer/i386
mkdir -p "$out/$boot"
cp "$isolinux" "$modules/ldlinux.c32" "$out/"
cp "$tree/$boot/linux" "$tree/$boot/initrd.gz" "$out/$boot/"
cp -r "$tree/$boot/boot-screens" "$out/$boot/"
cp "$modules/menu.c32" "$out/$boot/boot-screens/"
sed "s|$boot/boot-screens/vesamenu.c32|$boot/boot-screens/menu.c32|" "$tree/$boot/pxelinux.cfg/default" \
    >"$out/isolinux.cfg"
sed -i 's/vga=788/vga=normal no-scroll nomodeset/; s/ quiet//' "$out/$boot/boot-screens/txt.cfg"
grep -q vga=normal "$out/$boot/boot-screens/txt.cfg"
