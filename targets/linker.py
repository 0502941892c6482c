"""Linker scripts generated from a board's memory regions (one script shape for every board)."""
from targets import Board

_TEMPLATE = """\
/* Generated for {name}: code in FLASH, weights in {weights}, data/bss/arena/stack in RAM. */
MEMORY
{{
  FLASH (rx) : ORIGIN = 0x{flash_origin:08x}, LENGTH = 0x{flash_size:x}
{weights_region}  RAM (rwx)  : ORIGIN = 0x{ram_origin:08x}, LENGTH = 0x{ram_size:x}
}}
ENTRY({entry})
SECTIONS
{{
  .text : {{
    KEEP(*(.vectors))
    *(.text.start)
    *(.text .text.*)
    . = ALIGN(8);
  }} > FLASH
  .rodata : {{
    *(.rodata .rodata.* .srodata .srodata.*)
    . = ALIGN(8);
  }} > {weights}
  .data : {{
    __data_start = .;
    *(.data .data.* .sdata .sdata.*)
    . = ALIGN(8);
    __data_end = .;
  }} > RAM AT > FLASH
  __data_load = LOADADDR(.data);
  PROVIDE(__global_pointer$ = __data_start + 0x800);
  .bss (NOLOAD) : {{
    __bss_start = .;
    *(.bss .bss.* .sbss .sbss.* COMMON)
    . = ALIGN(8);
    __bss_end = .;
  }} > RAM
  .stack (NOLOAD) : {{
    . = ALIGN(16);
    . = . + 0x{stack_size:x};
    __stack_top = .;
  }} > RAM
  /DISCARD/ : {{ *(.ARM.exidx*) *(.comment) }}
}}
"""


def linker_script(board: Board) -> str:
    """The GNU ld script for ``board``; overflowing FLASH or RAM fails the link with ld's message."""
    weights = board.weights
    return _TEMPLATE.format(
        weights="WEIGHTS" if weights else "FLASH",
        weights_region=f"  WEIGHTS (r) : ORIGIN = 0x{weights.origin:08x}, LENGTH = 0x{weights.size:x}\n" if weights else "",
        name=board.name,
        flash_origin=board.flash.origin,
        flash_size=board.flash.size,
        ram_origin=board.ram.origin,
        ram_size=board.ram.size,
        entry="reset_handler" if board.arch == "arm" else "_start",
        stack_size=board.stack_size,
    )
