/*
 * spoolbus: os.urandom for the QEMU boards (included by extmod/modos.c, MIT licence as MicroPython).
 *
 * Neither board drives a random number generator: the bytes come from a xorshift generator stirred
 * with the microsecond counter on every call. Good for message ids and boot nonces, NOT for keys.
 */

#include "py/runtime.h"
#include "py/mphal.h"

static uint32_t rng_state;

static uint32_t rng_next(void) {
    uint32_t x = rng_state ^ (mp_hal_ticks_us() * 2654435761u);
    if (x == 0) {
        x = 0x9e3779b9u;
    }
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rng_state = x;
    return x;
}

static mp_obj_t mp_os_urandom(mp_obj_t num) {
    mp_int_t n = mp_obj_get_int(num);
    if (n < 0) {
        mp_raise_ValueError(NULL);
    }
    vstr_t vstr;
    vstr_init_len(&vstr, n);
    for (mp_int_t i = 0; i < n; i++) {
        vstr.buf[i] = rng_next() >> 24;
    }
    return mp_obj_new_bytes_from_vstr(&vstr);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mp_os_urandom_obj, mp_os_urandom);
