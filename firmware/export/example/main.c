/* A user's firmware with the mcutext library: reads a line of text from the UART, classifies
 * it, and prints one line back:
 *
 *     <label> TAB <score> <score> ... TAB <words>
 *
 * (the label's name, the int8 scores, the words the model read). Its own main, start-up and
 * UART driver; nothing of mcutext but mcutext.h. */
#include <stddef.h>
#include <stdint.h>

#include "mcutext.h"
#include "uart.h"

#define LINE_MAX 1024

static char line[LINE_MAX];

static void put_int(int v)
{
    char buf[12];
    int n = 0;
    unsigned u = v < 0 ? 0u - (unsigned)v : (unsigned)v;
    do {
        buf[n++] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u);
    if (v < 0) {
        uart_putc('-');
    }
    while (n) {
        uart_putc(buf[--n]);
    }
}

int main(void)
{
    uart_init();
    if (mcutext_init() != 0) {
        uart_puts("mcutext_init failed\n");
        for (;;) {
        }
    }
    uart_puts("ready " MCUTEXT_MODEL_NAME "\n");
    for (;;) {
        size_t n = 0;
        for (;;) { /* one line; the rest of an overlong one is dropped */
            int c = uart_getc();
            if (c == '\n') {
                break;
            }
            if (c != '\r' && n < LINE_MAX) {
                line[n++] = (char)c;
            }
        }
        mcutext_result_t r;
        const int label = mcutext_classify(line, n, &r);
        if (label < 0) {
            uart_puts("error ");
            put_int(label);
            uart_putc('\n');
            continue;
        }
        uart_puts(mcutext_label(label));
        uart_putc('\t');
        for (int i = 0; i < MCUTEXT_NUM_CLASSES; i++) {
            if (i) {
                uart_putc(' ');
            }
            put_int(r.scores[i]);
        }
        uart_putc('\t');
        put_int(r.words);
        uart_putc('\n');
    }
}
