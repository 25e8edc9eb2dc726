/*
 * This file is part of the MicroPython project, http://micropython.org/
 *
 * The MIT License (MIT)
 *
 * Copyright (c) 2014-2023 Damien P. George
 * spoolbus changes: run the frozen _boot.py and main.py after every (soft) reset; wake the UART input.
 *
 * Permission is hereby granted, free of charge, to any person obtaining a copy
 * of this software and associated documentation files (the "Software"), to deal
 * in the Software without restriction, including without limitation the rights
 * to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 * copies of the Software, and to permit persons to whom the Software is
 * furnished to do so, subject to the following conditions:
 *
 * The above copyright notice and this permission notice shall be included in
 * all copies or substantial portions of the Software.
 *
 * THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 * IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 * FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 * AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 * LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 * OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
 * THE SOFTWARE.
 */

#include <stdlib.h>

#include "py/compile.h"
#include "py/runtime.h"
#include "py/stackctrl.h"
#include "py/gc.h"
#include "py/mperrno.h"
#include "shared/runtime/gchelper.h"
#include "shared/runtime/pyexec.h"

#if MICROPY_HEAP_SIZE <= 0
#error MICROPY_HEAP_SIZE must be a positive integer.
#endif

static uint32_t gc_heap[MICROPY_HEAP_SIZE / sizeof(uint32_t)];

#if defined(QEMU_SOC_MPS2)
// UART0 of the MPS2 boards (ports/qemu/uart.c drives it).
#define UART0_DATA (*(volatile uint32_t *)0x40004000)
#define UART0_STATE (*(volatile uint32_t *)0x40004004)
#define UART_STATE_RXFULL (1 << 1)
#endif

int main(int argc, char **argv) {
    mp_stack_ctrl_init();
    mp_stack_set_limit(10240);
    gc_init(gc_heap, (char *)gc_heap + MICROPY_HEAP_SIZE);

    // spoolbus: QEMU's CMSDK UART model takes host bytes only while RX is enabled, and it looks at
    // that again only when its main loop wakes up or the guest reads the DATA register. The startup
    // code enables RX without a read, so host bytes waited about a second after boot. A read of the
    // empty DATA register makes QEMU look now (first call after boot: 1.05 s before, 0.1 s after).
    // The virt machine's 16550 asks QEMU for the next host byte on every read of its receive register.
    #if defined(QEMU_SOC_MPS2)
    if (!(UART0_STATE & UART_STATE_RXFULL)) {
        (void)UART0_DATA;
    }
    #endif

    for (;;) {
        mp_init();

        // spoolbus: mount the spool filesystem and start the board's node, as the other ports run
        // boot.py and main.py; a soft reset (machine.soft_reset()) runs them again.
        pyexec_frozen_module("_boot.py", false);
        if (pyexec_mode_kind == PYEXEC_MODE_FRIENDLY_REPL
            && (pyexec_frozen_module("main.py", true) & PYEXEC_FORCED_EXIT)) {
            goto soft_reset;
        }

        for (;;) {
            if (pyexec_mode_kind == PYEXEC_MODE_RAW_REPL) {
                if (pyexec_raw_repl() != 0) {
                    break;
                }
            } else {
                if (pyexec_friendly_repl() != 0) {
                    break;
                }
            }
        }

    soft_reset:
        mp_printf(&mp_plat_print, "MPY: soft reboot\n");

        gc_sweep_all();
        mp_deinit();
    }
}

void gc_collect(void) {
    gc_collect_start();
    gc_helper_collect_regs_and_stack();
    gc_collect_end();
}

void nlr_jump_fail(void *val) {
    mp_printf(&mp_plat_print, "uncaught NLR\n");
    exit(1);
}
