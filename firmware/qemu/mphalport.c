/*
 * This file is part of the MicroPython project, http://micropython.org/
 *
 * The MIT License (MIT)
 *
 * Copyright (c) 2024 Damien P. George
 * spoolbus changes: stdin polling and time ticks (MPS2 FPGA counter, virt CLINT mtime).
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

#include "py/mphal.h"
#include "py/runtime.h"
#include "py/stream.h"
#include "shared/runtime/semihosting_arm.h"
#include "uart.h"

// UART is better behaved with redirection under qemu-system-arm, so prefer that for stdio.
// The UART holds one received byte at a time; polling takes it into `pending` so that a poll
// never loses the byte it saw.
static int pending = -1;

uintptr_t mp_hal_stdio_poll(uintptr_t poll_flags) {
    uintptr_t ret = 0;
    if (poll_flags & MP_STREAM_POLL_RD) {
        if (pending < 0) {
            pending = uart_rx_chr();
        }
        if (pending >= 0) {
            ret |= MP_STREAM_POLL_RD;
        }
    }
    if (poll_flags & MP_STREAM_POLL_WR) {
        ret |= MP_STREAM_POLL_WR;
    }
    return ret;
}

int mp_hal_stdin_rx_chr(void) {
    for (;;) {
        int c = pending;
        if (c >= 0) {
            pending = -1;
            return c;
        }
        c = uart_rx_chr();
        if (c >= 0) {
            return c;
        }
    }
}

mp_uint_t mp_hal_stdout_tx_strn(const char *str, size_t len) {
    uart_tx_strn(str, len);
    return len;
}

#if defined(QEMU_SOC_VIRT)

// The virt machine's CLINT counts its 64-bit mtime at 10 MHz (QEMU's ACLINT timebase), from QEMU's
// virtual clock. Ticks are its quotients truncated to 32 bits, so they wrap as MicroPython expects.
#define CLINT_MTIME_LO (*(volatile uint32_t *)0x0200bff8)
#define CLINT_MTIME_HI (*(volatile uint32_t *)0x0200bffc)

static uint64_t mtime(void) {
    uint32_t hi, lo;
    do {
        hi = CLINT_MTIME_HI;
        lo = CLINT_MTIME_LO;
    } while (hi != CLINT_MTIME_HI);
    return ((uint64_t)hi << 32) | lo;
}

mp_uint_t mp_hal_ticks_us(void) {
    return (uint32_t)(mtime() / 10);
}

mp_uint_t mp_hal_ticks_ms(void) {
    return (uint32_t)(mtime() / 10000);
}

mp_uint_t mp_hal_ticks_cpu(void) {
    return CLINT_MTIME_LO;
}

#else

// The MPS2 FPGA IO block counts the 25 MHz reference clock; with a prescale of 24 its COUNTER
// register advances once a microsecond. QEMU derives it from the virtual clock. Milliseconds are
// accumulated from microsecond deltas (32-bit wrap-around arithmetic, no 64-bit division).
#define FPGAIO_COUNTER (*(volatile uint32_t *)0x40028018)
#define FPGAIO_PRESCALE (*(volatile uint32_t *)0x4002801c)

static uint32_t us_last;
static uint32_t us_rest;
static uint32_t ms_count;

mp_uint_t mp_hal_ticks_us(void) {
    if (FPGAIO_PRESCALE != 24) {
        FPGAIO_PRESCALE = 24;
    }
    return FPGAIO_COUNTER;
}

mp_uint_t mp_hal_ticks_ms(void) {
    uint32_t now = mp_hal_ticks_us();
    us_rest += now - us_last;
    us_last = now;
    ms_count += us_rest / 1000;
    us_rest %= 1000;
    return ms_count;
}

mp_uint_t mp_hal_ticks_cpu(void) {
    return FPGAIO_COUNTER;
}

#endif

// The board has no real-time clock: littlefs file times count from boot.
uint64_t mp_hal_time_ns(void) {
    return (uint64_t)mp_hal_ticks_ms() * 1000000;
}

void mp_hal_delay_us(mp_uint_t us) {
    uint32_t start = mp_hal_ticks_us();
    while (mp_hal_ticks_us() - start < us) {
    }
}

void mp_hal_delay_ms(mp_uint_t ms) {
    uint32_t start = mp_hal_ticks_ms();
    while (mp_hal_ticks_ms() - start < ms) {
        mp_handle_pending(true);
    }
}
