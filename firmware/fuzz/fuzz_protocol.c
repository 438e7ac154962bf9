/* Fuzz target: the whole receive path of the serial protocol (docs/protocol.md): line
 * framing, the UTF-8 check, the dispatcher and every command, with the real generated model
 * and the personalized head. The input is the byte stream the UART delivers after boot.
 * The board has storage (NOR flash in RAM), so `head save` and the load at boot run too.
 * Checks: no sanitizer report; the storage is used as NOR flash; afterwards, and after a
 * reset, the device still answers `ping` with printable ASCII lines and its head is finite. */
#include "app_host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_app_boot();
    fuzz_feed(data, size);
    fuzz_check_alive();
#if HAVE_HEAD
    fuzz_check_head_finite();
    /* A reset: whatever `head save` stored loads at boot (or is refused) and the device
     * serves again. */
    fuzz_app_reset();
    fuzz_check_head_finite();
    fuzz_check_alive();
#endif
    return 0;
}
