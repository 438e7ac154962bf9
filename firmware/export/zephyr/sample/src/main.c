/* Classifies each line typed on the console with the mcutext module's model. */
#include <string.h>

#include <zephyr/console/console.h>
#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "mcutext.h"

int main(void)
{
    console_getline_init();
    if (mcutext_init() != 0) {
        printk("mcutext_init failed\n");
        return 0;
    }
    printk("ready: type a sentence\n");
    for (;;) {
        char *line = console_getline();
        mcutext_result_t r;
        int label = mcutext_classify(line, strlen(line), &r);
        if (label < 0) {
            printk("error %d\n", label);
            continue;
        }
        printk("%s\t", mcutext_label(label));
        for (int i = 0; i < MCUTEXT_NUM_CLASSES; i++) {
            printk(i ? " %d" : "%d", r.scores[i]);
        }
        printk("\t%u\n", r.words);
    }
    return 0;
}
