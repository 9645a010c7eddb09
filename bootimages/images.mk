# Boot images for the int 13h work: the ladder of real boot loaders (L2-L7), our NASM conformance and bench
# sectors. Included from the top Makefile; every path is relative to the project root. Recipes run without root
# and without loop devices: sfdisk on image files, mkfs.fat --offset, mtools with @@offset, syslinux --offset.
# Nothing built here is committed (bootimages/build/ is git-ignored).

BI_SRC      := bootimages
BI_BUILD    := bootimages/build
BI_SYSLINUX := /usr/lib/syslinux
BI_MODULES  := $(BI_SYSLINUX)/modules/bios
BI_ISOLINUX := /usr/lib/ISOLINUX/isolinux.bin
BI_FREEDOS  ?= ../shared/images/freedos722.img
NASM        ?= nasm

# The FAT partition of the hard-disk rungs starts at sector 2048 (1 MiB) of a 32 MiB image.
BI_PART_SECTOR := 2048
BI_PART_BYTES  := 1048576
BI_HDD_SIZE    := 32M

BI_LADDER := $(BI_BUILD)/l2-syslinux.img $(BI_BUILD)/l3-chain-freedos.img $(BI_BUILD)/l4-memdisk.img \
             $(BI_BUILD)/l5-isolinux.iso $(BI_BUILD)/l6-grub.iso
BI_CONFORMANCE := $(BI_BUILD)/conformance.img $(BI_BUILD)/readparams.img $(BI_BUILD)/cdconf.iso \
                  $(BI_BUILD)/fdconf1440.img $(BI_BUILD)/fdconf360.img $(BI_BUILD)/geometry.bin \
                  $(BI_BUILD)/drives.img
BI_BENCH := $(BI_BUILD)/bench-ext127.img $(BI_BUILD)/bench-ext1.img
# The CPU workload (bootimages/cpuwork/): interrupts off/on; 1 MiB of output for the tests, 16 MiB for bench cpu.
BI_CPUWORK := $(BI_BUILD)/cpuwork-off.img $(BI_BUILD)/cpuwork-on.img \
              $(BI_BUILD)/cpuwork-off-16m.img $(BI_BUILD)/cpuwork-on-16m.img
# Boot code we did not write, for bench cpu: memtest86+ and the Debian installer's kernel from SYSLINUX, and a
# GRUB with no configuration (it stops at grub>).
BI_MEMTEST := /boot/memtest86+ia32.bin
BI_DI_LINUX := /usr/lib/debian-installer/images/12/i386/text/debian-installer/i386/linux
BI_CPUBENCH := $(BI_BUILD)/cpu-memtest.img $(BI_BUILD)/cpu-linux.img $(BI_BUILD)/cpu-grub.iso $(BI_BUILD)/cpu-ipxe.img

.PHONY: ladder-images conformance-images bench-images cpuwork-images cpubench-images boot-images clean-boot-images
ladder-images: $(BI_LADDER)
conformance-images: $(BI_CONFORMANCE)
bench-images: $(BI_BENCH)
cpuwork-images: $(BI_CPUWORK)
cpubench-images: $(BI_CPUWORK) $(BI_CPUBENCH)
boot-images: ladder-images conformance-images bench-images cpuwork-images

clean-boot-images:
	rm -rf $(BI_BUILD)

$(BI_BUILD):
	mkdir -p $@

# An empty 32 MiB disk: one bootable FAT16 partition from sector 2048 to the end, SYSLINUX in its boot sector and
# SYSLINUX's MBR code in the first 440 bytes (the partition table stays). $(1) = image file, $(2) = size if not
# $(BI_HDD_SIZE).
define bi_syslinux_hdd
	rm -f $(1).tmp
	truncate -s $(or $(2),$(BI_HDD_SIZE)) $(1).tmp
	echo 'start=$(BI_PART_SECTOR), type=6, bootable' | sfdisk -q $(1).tmp
	mkfs.fat -F 16 -h $(BI_PART_SECTOR) --offset $(BI_PART_SECTOR) $(1).tmp >/dev/null
	syslinux --install --offset $(BI_PART_BYTES) $(1).tmp
	dd if=$(BI_SYSLINUX)/mbr/mbr.bin of=$(1).tmp bs=440 count=1 conv=notrunc status=none
endef

# L2: SYSLINUX from a hard disk, stopping at its boot: prompt.
$(BI_BUILD)/l2-syslinux.img: $(BI_SRC)/ladder/l2-syslinux/syslinux.cfg | $(BI_BUILD)
	$(call bi_syslinux_hdd,$@)
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) $< ::syslinux.cfg
	mv $@.tmp $@

# L3: SYSLINUX's chain.c32 loads the FreeDOS kernel from C: (files copied out of the FreeDOS floppy).
$(BI_BUILD)/l3-chain-freedos.img: $(wildcard $(BI_SRC)/ladder/l3-chain-freedos/*) $(BI_FREEDOS) | $(BI_BUILD)
	$(call bi_syslinux_hdd,$@)
	rm -rf $@.d && mkdir $@.d
	mcopy -o -i $(BI_FREEDOS) ::KERNEL.SYS ::COMMAND.COM $@.d/
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) $@.d/KERNEL.SYS $@.d/COMMAND.COM \
		$(BI_MODULES)/chain.c32 $(BI_MODULES)/libcom32.c32 $(BI_MODULES)/libutil.c32 \
		$(BI_SRC)/ladder/l3-chain-freedos/syslinux.cfg $(BI_SRC)/ladder/l3-chain-freedos/FDCONFIG.SYS \
		$(BI_SRC)/ladder/l3-chain-freedos/AUTOEXEC.BAT ::
	rm -rf $@.d
	mv $@.tmp $@

# L4: MEMDISK boots the FreeDOS floppy as A: (it hooks int 13h and int 15h E820 above the disk it came from).
$(BI_BUILD)/l4-memdisk.img: $(BI_SRC)/ladder/l4-memdisk/syslinux.cfg $(BI_FREEDOS) | $(BI_BUILD)
	$(call bi_syslinux_hdd,$@)
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) $< ::syslinux.cfg
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) $(BI_SYSLINUX)/memdisk ::memdisk
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) $(BI_FREEDOS) ::fdos.img
	mv $@.tmp $@

# L5: ISOLINUX, El Torito no-emulation with a boot-info table.
$(BI_BUILD)/l5-isolinux.iso: $(BI_SRC)/ladder/l5-isolinux/isolinux.cfg | $(BI_BUILD)
	rm -rf $@.d && mkdir -p $@.d/isolinux
	cp $(BI_ISOLINUX) $(BI_MODULES)/ldlinux.c32 $< $@.d/isolinux/
	xorriso -as mkisofs -quiet -o $@.tmp -V NBDBOOT_L5 -b isolinux/isolinux.bin -c isolinux/boot.cat \
		-no-emul-boot -boot-load-size 4 -boot-info-table $@.d >$@.log 2>&1 || { cat $@.log; exit 1; }
	rm -rf $@.d $@.log
	mv $@.tmp $@

# L6/L7: one GRUB 2 hybrid image (MBR + El Torito), booted as a hard disk (L6) and as a CD (L7).
$(BI_BUILD)/l6-grub.iso: $(BI_SRC)/ladder/l6-grub/grub.cfg | $(BI_BUILD)
	rm -rf $@.d && mkdir -p $@.d/boot/grub
	cp $< $@.d/boot/grub/grub.cfg
	grub-mkrescue -o $@.tmp $@.d >$@.log 2>&1 || { cat $@.log; exit 1; }
	rm -rf $@.d $@.log
	mv $@.tmp $@

# Our NASM boot programs: the flat binary is the start of the disk; the data area behind it is written by
# bootimages/conformance/mkdata.py so that every sector's content is distinct and computable from its LBA.
$(BI_BUILD)/%.bin: $(BI_SRC)/conformance/%.asm $(wildcard $(BI_SRC)/conformance/*.inc) | $(BI_BUILD)
	$(NASM) -f bin -I $(BI_SRC)/conformance/ -o $@ $<

$(BI_BUILD)/bench-%.bin: $(BI_SRC)/bench/%.asm $(BI_SRC)/bench/bench.inc $(BI_SRC)/conformance/report.inc | $(BI_BUILD)
	$(NASM) -f bin -I $(BI_SRC)/conformance/ -I $(BI_SRC)/bench/ -o $@ $<

# Conformance disk: 20 cylinders x 16 heads x 63 sectors (10160640 bytes), a geometry QEMU, SeaBIOS and an
# iPXE-style partition-table guess all agree on.
$(BI_BUILD)/conformance.img $(BI_BUILD)/readparams.img: $(BI_BUILD)/%.img: $(BI_BUILD)/%.bin \
		$(BI_SRC)/conformance/mkdata.py
	python3 $(BI_SRC)/conformance/mkdata.py $< $@ 20160

# The two-disk program on a small disk of its own (20 x 16 x 63 like the conformance disk, no partition).
$(BI_BUILD)/drives.img: $(BI_BUILD)/drives.bin $(BI_SRC)/conformance/mkdata.py
	python3 $(BI_SRC)/conformance/mkdata.py $< $@ 20160

# The floppy conformance program on a 1.44M and a 360K floppy (sector counts 2880 and 720).
$(BI_BUILD)/fdconf1440.img: $(BI_BUILD)/fdconf.bin $(BI_SRC)/conformance/mkdata.py
	python3 $(BI_SRC)/conformance/mkdata.py $< $@ 2880
$(BI_BUILD)/fdconf360.img: $(BI_BUILD)/fdconf.bin $(BI_SRC)/conformance/mkdata.py
	python3 $(BI_SRC)/conformance/mkdata.py $< $@ 720

# The CD conformance program as the no-emulation El Torito boot image of a small ISO 9660 CD.
$(BI_BUILD)/cdconf.iso: $(BI_BUILD)/cdconf.bin
	rm -rf $@.d && mkdir -p $@.d
	cp $< $@.d/cdconf.bin
	xorriso -as mkisofs -quiet -o $@.tmp -V NBDBOOT_CDCONF -b cdconf.bin -c boot.cat -no-emul-boot \
		-boot-load-size 8 $@.d >$@.log 2>&1 || { cat $@.log; exit 1; }
	rm -rf $@.d $@.log
	mv $@.tmp $@

# Keep the flat binaries: the emulator's tests may load them directly.
.SECONDARY: $(BI_BENCH:.img=.bin) $(BI_BUILD)/conformance.bin $(BI_BUILD)/readparams.bin $(BI_BUILD)/cdconf.bin \
	$(BI_BUILD)/fdconf.bin $(BI_BUILD)/geometry.bin $(BI_BUILD)/drives.bin

# Bench disks: the program, then 64 MiB from LBA 2048 on (sparse: the bench counts bytes, not content).
$(BI_BUILD)/bench-%.img: $(BI_BUILD)/bench-%.bin $(BI_SRC)/conformance/mkdata.py
	python3 $(BI_SRC)/conformance/mkdata.py $< $@ 133120 --zero

# The CPU workload on a 1 MiB disk: $(1) = IRQS (0/1), $(2) = output KiB, $(3) = its name on screen.
define bi_cpuwork
	$(NASM) -f bin -DIRQS=$(1) -DOUT_KB=$(2) -DNAME='"$(3)"' -o $@.tmp $<
	truncate -s 1M $@.tmp
	mv $@.tmp $@
endef
$(BI_BUILD)/cpuwork-off.img: $(BI_SRC)/cpuwork/cpuwork.asm | $(BI_BUILD)
	$(call bi_cpuwork,0,1024,off)
$(BI_BUILD)/cpuwork-on.img: $(BI_SRC)/cpuwork/cpuwork.asm | $(BI_BUILD)
	$(call bi_cpuwork,1,1024,on)
$(BI_BUILD)/cpuwork-off-16m.img: $(BI_SRC)/cpuwork/cpuwork.asm | $(BI_BUILD)
	$(call bi_cpuwork,0,16384,off-16m)
$(BI_BUILD)/cpuwork-on-16m.img: $(BI_SRC)/cpuwork/cpuwork.asm | $(BI_BUILD)
	$(call bi_cpuwork,1,16384,on-16m)

$(BI_BUILD)/cpu-memtest.img: $(BI_SRC)/cpubench/memtest/syslinux.cfg $(BI_MEMTEST) | $(BI_BUILD)
	$(call bi_syslinux_hdd,$@)
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) $< ::syslinux.cfg
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) $(BI_MEMTEST) ::memtest.bin
	mv $@.tmp $@

$(BI_BUILD)/cpu-linux.img: $(BI_SRC)/cpubench/linux/syslinux.cfg $(BI_DI_LINUX) | $(BI_BUILD)
	$(call bi_syslinux_hdd,$@)
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) $< ::syslinux.cfg
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) $(BI_DI_LINUX) ::linux
	mv $@.tmp $@

$(BI_BUILD)/cpu-grub.iso: | $(BI_BUILD)
	rm -rf $@.d && mkdir -p $@.d
	grub-mkrescue -o $@.tmp $@.d >$@.log 2>&1 || { cat $@.log; exit 1; }
	rm -rf $@.d $@.log
	mv $@.tmp $@

# SYSLINUX loading iPXE as a Linux kernel (its decompressor runs with interrupts off for a while).
$(BI_BUILD)/cpu-ipxe.img: $(BI_SRC)/cpubench/ipxe/syslinux.cfg /usr/lib/ipxe/ipxe.lkrn | $(BI_BUILD)
	$(call bi_syslinux_hdd,$@)
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) $< ::syslinux.cfg
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) /usr/lib/ipxe/ipxe.lkrn ::ipxe.lkrn
	mv $@.tmp $@

# Interrupt-delivery programs (bootimages/interrupts/): each a 1.44 MB floppy whose first sectors hold the
# program, booted under nbdboot and QEMU+SeaBIOS by tests/test_interrupts_reference.py.
BI_INTERRUPTS := $(BI_BUILD)/rmvectors.img $(BI_BUILD)/pmkernel.img $(BI_BUILD)/v86mon.img $(BI_BUILD)/rtcrate.img $(BI_BUILD)/kbdhook.img $(BI_BUILD)/ledblink.img
interrupt-images: $(BI_INTERRUPTS)
$(BI_BUILD)/%.img: $(BI_SRC)/interrupts/%.asm | $(BI_BUILD)
	$(NASM) -f bin -o $@.tmp $<
	truncate -s 1474560 $@.tmp
	mv $@.tmp $@

# ---- The compatibility corpus: boot programs we did not write, built from Debian packages (syslinux, grub-pc-bin,
# ipxe, memtest86+, debian-installer-12-netboot-i386) and ../shared/images, booted as a user would boot them
# (tests/test_corpus_nbdboot.py, tests/test_reference_corpus.py). Sources and configs: bootimages/corpus/.

CO_SRC      := bootimages/corpus
CO_DI       := /usr/lib/debian-installer/images/12/i386/text
CO_DI_BOOT  := $(CO_DI)/debian-installer/i386
CO_IPXE     := /usr/lib/ipxe
CO_MEMTEST  := /boot/memtest86+ia32.bin
CO_FD_SIZES := 160 180 320 360 640 720 1200 1440 2880

CO_SL_CASES   := timeout enter menu hdt ipxe di
CO_GRUB_CASES := menu linux16 linux ipxe memtest
BI_CORPUS := $(CO_SL_CASES:%=$(BI_BUILD)/corpus-sl-%.img) $(CO_GRUB_CASES:%=$(BI_BUILD)/corpus-grub-%.iso) \
             $(BI_BUILD)/corpus-ipxe.iso $(BI_BUILD)/corpus-di-isolinux.iso \
             $(CO_FD_SIZES:%=$(BI_BUILD)/corpus-fd%.img)

.PHONY: corpus-images
corpus-images: $(BI_CORPUS)

# A boot sector SYSLINUX boots as a label's kernel; and our Multiboot kernel for GRUB.
$(BI_BUILD)/hello.bs: $(CO_SRC)/hello.asm | $(BI_BUILD)
	$(NASM) -f bin -DTEXT='"NBDBOOT-CORPUS the default label booted"' -o $@ $<
$(BI_BUILD)/mbkernel.bin: $(CO_SRC)/mbkernel.asm | $(BI_BUILD)
	$(NASM) -f bin -o $@ $<

# SYSLINUX hard disks: sl-NAME.cfg as syslinux.cfg plus the files the case boots. $(1) = NAME, $(2) = files,
# $(3) = disk size (default $(BI_HDD_SIZE)).
define co_syslinux_image
$(BI_BUILD)/corpus-sl-$(1).img: $(CO_SRC)/sl-$(1).cfg $(2) | $(BI_BUILD)
	$$(call bi_syslinux_hdd,$$@,$(3))
	mcopy -o -i $$@.tmp@@$(BI_PART_BYTES) $$< ::syslinux.cfg
	mcopy -o -i $$@.tmp@@$(BI_PART_BYTES) $(2) ::
	mv $$@.tmp $$@
endef
$(eval $(call co_syslinux_image,timeout,$(BI_BUILD)/hello.bs))
$(eval $(call co_syslinux_image,enter,$(BI_BUILD)/hello.bs))
$(eval $(call co_syslinux_image,menu,$(BI_BUILD)/hello.bs $(BI_MODULES)/menu.c32 $(BI_MODULES)/libcom32.c32 \
	$(BI_MODULES)/libutil.c32))
$(eval $(call co_syslinux_image,hdt,$(BI_MODULES)/hdt.c32 $(BI_MODULES)/libcom32.c32 $(BI_MODULES)/libutil.c32 \
	$(BI_MODULES)/libmenu.c32 $(BI_MODULES)/libgpl.c32))
$(eval $(call co_syslinux_image,ipxe,$(CO_IPXE)/ipxe.lkrn))
$(eval $(call co_syslinux_image,di,$(CO_DI_BOOT)/linux $(CO_DI_BOOT)/initrd.gz,64M))

# GRUB 2 hybrid images (grub-mkrescue), grub-NAME.cfg as grub.cfg and the kernels in /boot.
CO_GRUB_PAYLOAD := $(BI_BUILD)/mbkernel.bin $(CO_DI_BOOT)/linux $(CO_IPXE)/ipxe.lkrn $(CO_MEMTEST)
$(BI_BUILD)/corpus-grub-%.iso: $(CO_SRC)/grub-%.cfg $(CO_GRUB_PAYLOAD) | $(BI_BUILD)
	rm -rf $@.d && mkdir -p $@.d/boot/grub
	cp $< $@.d/boot/grub/grub.cfg
	cp $(CO_GRUB_PAYLOAD) $@.d/boot/
	grub-mkrescue -o $@.tmp $@.d >$@.log 2>&1 || { cat $@.log; exit 1; }
	rm -rf $@.d $@.log
	mv $@.tmp $@

# iPXE's own CD, as the package ships it.
$(BI_BUILD)/corpus-ipxe.iso: $(CO_IPXE)/ipxe.iso | $(BI_BUILD)
	cp $< $@

# An ISOLINUX CD of the installer's netboot tree with its own boot menu. Two changes, both in copies: the menu
# is menu.c32 instead of vesamenu.c32 (same config language, drawn on the text screen that the tests read), and
# the Install entry boots on a text console with the kernel's messages shown (vga=normal, no `quiet`).
$(BI_BUILD)/corpus-di-isolinux.iso: $(CO_SRC)/di-isolinux.sh | $(BI_BUILD)
	rm -rf $@.d && mkdir -p $@.d
	sh $(CO_SRC)/di-isolinux.sh $(CO_DI) $(BI_ISOLINUX) $(BI_MODULES) $@.d
	xorriso -as mkisofs -quiet -o $@.tmp -V NBDBOOT_DI -b isolinux.bin -c boot.cat \
		-no-emul-boot -boot-load-size 4 -boot-info-table $@.d >$@.log 2>&1 || { cat $@.log; exit 1; }
	rm -rf $@.d $@.log
	mv $@.tmp $@

# FreeDOS boot floppies of every PC size, formatted by mformat with the FreeDOS boot sector of the shared 720K
# floppy (mformat -B keeps its code and writes the new geometry into its BPB), then KERNEL.SYS, COMMAND.COM and
# an AUTOEXEC.BAT that names the size. 640K has no mformat -f name: 80 cylinders x 2 heads x 8 sectors.
co_fd_format = $(if $(filter 640,$(1)),-t 80 -h 2 -s 8,-f $(1))
$(BI_BUILD)/corpus-fd%.img: $(BI_FREEDOS) | $(BI_BUILD)
	rm -rf $@.tmp $@.d && mkdir $@.d
	dd if=$(BI_FREEDOS) of=$@.d/bootsect.bin bs=512 count=1 status=none
	mcopy -o -i $(BI_FREEDOS) ::KERNEL.SYS ::COMMAND.COM $@.d/
	printf '@echo off\r\necho NBDBOOT-FD$* FreeDOS from a $*K floppy\r\n' >$@.d/AUTOEXEC.BAT
	mformat -C -i $@.tmp $(call co_fd_format,$*) -v FD$* -B $@.d/bootsect.bin ::
	mcopy -i $@.tmp $@.d/KERNEL.SYS $@.d/COMMAND.COM $@.d/AUTOEXEC.BAT ::
	mattrib -i $@.tmp +s +h ::KERNEL.SYS
	rm -rf $@.d
	mv $@.tmp $@

# Display and serial port images (tests/test_display_boot.py): SYSLINUX prompting on COM1, SYSLINUX's
# vesamenu.c32, and GRUB with its menu on COM1 and a VBE gfxterm.
BI_DISPLAY := $(BI_BUILD)/syslinux-serial.img $(BI_BUILD)/syslinux-vesamenu.img $(BI_BUILD)/grub-display.iso
.PHONY: display-images
display-images: $(BI_DISPLAY)

$(BI_BUILD)/syslinux-serial.img: $(BI_SRC)/display/syslinux-serial.cfg | $(BI_BUILD)
	$(call bi_syslinux_hdd,$@)
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) $< ::syslinux.cfg
	mv $@.tmp $@

$(BI_BUILD)/syslinux-vesamenu.img: $(BI_SRC)/display/syslinux-vesamenu.cfg | $(BI_BUILD)
	$(call bi_syslinux_hdd,$@)
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) $< ::syslinux.cfg
	mcopy -o -i $@.tmp@@$(BI_PART_BYTES) $(BI_MODULES)/vesamenu.c32 $(BI_MODULES)/libcom32.c32 \
		$(BI_MODULES)/libutil.c32 ::
	mv $@.tmp $@

$(BI_BUILD)/grub-display.iso: $(BI_SRC)/display/grub.cfg | $(BI_BUILD)
	rm -rf $@.d && mkdir -p $@.d/boot/grub
	cp $< $@.d/boot/grub/grub.cfg
	grub-mkrescue -o $@.tmp $@.d >$@.log 2>&1 || { cat $@.log; exit 1; }
	rm -rf $@.d $@.log
	mv $@.tmp $@
