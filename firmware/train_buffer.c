/* The buffered examples (docs/protocol.md, `head train`): every learned or kept example's
 * int8 features and row, oldest first in a ring of MT_TRAIN_BUFFER (a full buffer drops its
 * oldest). The features of one model are exact int8 values, so training on them repeats the
 * steps `learn` took, without the text or the model. Its commands: `keep`, `head imprint`,
 * `head train`. */
#include "app_internal.h"
#include "board.h"
#include "model_api.h"
#include "protocol.h"

#if HAVE_HEAD
#define MT_TRAIN_MAX_EPOCHS 100u
#if MT_TRAIN_BUFFER
#if MT_TRAIN_BUFFER > 65535
#error "MT_TRAIN_BUFFER: at most 65535 examples"
#endif
static int8_t buf_q[MT_TRAIN_BUFFER][MT_HEAD_MAX_FEATURES];
static uint16_t buf_y[MT_TRAIN_BUFFER];
/* `head train` steps the live head; when a step part way is refused it brings the head back
 * from this copy, and its epoch lines wait for the end: a refused train changes nothing and
 * sends one error line (docs/protocol.md). */
static mt_head_snapshot_t train_before;
static float epoch_loss[MT_TRAIN_MAX_EPOCHS];
static uint16_t epoch_correct[MT_TRAIN_MAX_EPOCHS];
#endif
static uint32_t buf_start, buf_n;

uint32_t buffer_count(void)
{
    return buf_n;
}

void buffer_clear(void)
{
    buf_start = 0;
    buf_n = 0;
}

#if MT_TRAIN_BUFFER
static uint32_t buf_at(uint32_t i)
{
    return (buf_start + i) % MT_TRAIN_BUFFER;
}
#endif

void buffer_add(const int8_t *q, uint32_t y)
{
#if MT_TRAIN_BUFFER
    uint32_t slot;
    if (buf_n == MT_TRAIN_BUFFER) {
        slot = buf_start;
        buf_start = buf_at(1);
    } else {
        slot = buf_at(buf_n++);
    }
    for (uint32_t k = 0; k < head.h; k++) {
        buf_q[slot][k] = q[k];
    }
    buf_y[slot] = (uint16_t)y;
#else
    (void)q;
    (void)y;
#endif
}

/* A removed label's examples leave the buffer (the order of the others stays). */
void buffer_drop_row(uint32_t row)
{
#if MT_TRAIN_BUFFER
    uint32_t kept = 0;
    for (uint32_t i = 0; i < buf_n; i++) {
        const uint32_t from = buf_at(i);
        if (buf_y[from] == row) {
            continue;
        }
        const uint32_t to = buf_at(kept++);
        if (to != from) {
            for (uint32_t k = 0; k < head.h; k++) {
                buf_q[to][k] = buf_q[from][k];
            }
            buf_y[to] = buf_y[from];
        }
    }
    buf_n = kept;
#else
    (void)row;
#endif
}

/* keep <crc32 hex> LABEL<TAB>text (framed as learn): the example's features go to the
 * buffer, without a step; `head imprint` and `head train` use them. */
void cmd_keep(const uint8_t *arg, uint32_t n)
{
    if (!head_available()) {
        return;
    }
#if MT_TRAIN_BUFFER
    uint32_t y = 0;
    run_result_t r;
    if (!run_labelled(arg, n, "keep", &y, &r)) {
        return;
    }
    buffer_add(mt_model_features(), y);
    put_label_line("kept", y);
    put_used_of("buffer", buffer_count(), MT_TRAIN_BUFFER);
    mt_put_ok();
#else
    (void)arg;
    (void)n;
    put_error(MT_ERR_BAD_ARGUMENT, "built without a training buffer (MT_TRAIN_BUFFER 0)");
#endif
}

#if MT_TRAIN_BUFFER
/* The sum of the unit directions of row c's buffered examples (mt_head_imprint_add) into
 * acc; returns how many examples the row has (0 for a row that is not an added label). */
static uint32_t imprint_sum(uint32_t c, float *acc)
{
    const mt_model_info_t *m = &mt_model_info;
    if (!(head.flags[c] & MT_HEAD_ROW_ACTIVE)) {
        return 0;
    }
    uint32_t count = 0;
    for (uint32_t k = 0; k < head.h; k++) {
        acc[k] = 0.0f;
    }
    for (uint32_t i = 0; i < buf_n; i++) {
        const uint32_t j = buf_at(i);
        if (buf_y[j] == c) {
            (void)mt_head_imprint_add(&head, acc, buf_q[j], m->features_q.scale,
                                      m->features_q.zero_point);
            count++;
        }
    }
    return count;
}
#endif

/* head imprint: every added label with buffered examples gets the imprint of their mean
 * direction (mt_head_imprint_mean); one `imprinted` line per label. All labels are checked
 * before the first is imprinted, so a refusal changes nothing. */
static void cmd_head_imprint(void)
{
#if MT_TRAIN_BUFFER
    static float acc[MT_HEAD_MAX_FEATURES];
    for (uint32_t c = head.c0; c < head.c_max; c++) {
        if (imprint_sum(c, acc) && mt_head_imprint_check(&head, c, acc) == MT_HEAD_ERANGE) {
            put_head_error(MT_HEAD_ERANGE);
            return;
        }
    }
    uint32_t done = 0;
    for (uint32_t c = head.c0; c < head.c_max; c++) {
        const uint32_t count = imprint_sum(c, acc);
        if (count == 0u || mt_head_imprint_mean(&head, c, acc) != MT_HEAD_OK) {
            continue; /* no examples, or every one at the feature mean: nothing to imprint */
        }
        head_unsaved = 1;
        done++;
        mt_put("imprinted ");
        mt_put_u32(c);
        mt_put_char(' ');
        put_str_escaped(mt_head_label(&head, c));
        mt_put(" examples ");
        mt_put_u32(count);
        mt_put_eol();
    }
    if (done == 0u) {
        put_error(MT_ERR_BAD_ARGUMENT, "no buffered examples of added labels (keep some first)");
        return;
    }
    put_kv("updates", head.updates);
    mt_put_ok();
#else
    put_error(MT_ERR_BAD_ARGUMENT, "built without a training buffer (MT_TRAIN_BUFFER 0)");
#endif
}

/* head train EPOCHS: epochs of SGD steps over the buffered examples, oldest first. */
static void cmd_head_train(const uint8_t *arg, uint32_t n)
{
    uint32_t pos = 0;
    int ok = 1;
    const uint32_t epochs = parse_u32(arg, n, &pos, &ok);
    if (!ok || pos != n || epochs == 0u || epochs > MT_TRAIN_MAX_EPOCHS) {
        put_error(MT_ERR_BAD_ARGUMENT, "usage: head train EPOCHS (1 to 100)");
        return;
    }
    if (buf_n == 0u) {
        put_error(MT_ERR_BAD_ARGUMENT, "no buffered examples (learn some first)");
        return;
    }
#if MT_TRAIN_BUFFER
    const mt_model_info_t *m = &mt_model_info;
    mt_head_snapshot(&head, &train_before);
    const uint32_t t0 = board_counter_ticks();
    for (uint32_t e = 0; e < epochs; e++) {
        float sum = 0.0f;
        uint32_t correct = 0;
        for (uint32_t i = 0; i < buf_n; i++) {
            board_watchdog_kick(); /* 100 epochs of 64 steps outlast a 2 s watchdog on an M0 */
            const uint32_t j = buf_at(i);
            uint32_t best = 0;
            float loss = 0.0f;
            (void)mt_head_scores(&head, buf_q[j], m->features_q.scale, m->features_q.zero_point,
                                 0, &best);
            correct += best == buf_y[j] ? 1u : 0u;
            const int st = mt_head_step(&head, buf_q[j], m->features_q.scale,
                                        m->features_q.zero_point, buf_y[j], &loss);
            if (st != MT_HEAD_OK) {
                mt_head_restore(&head, &train_before);
                if (st == MT_HEAD_ERANGE) {
                    put_head_error(st);
                } else {
                    put_error(MT_ERR_BAD_ARGUMENT, "a buffered example has no label row");
                }
                return;
            }
            sum += loss;
        }
        epoch_loss[e] = sum / (float)buf_n;
        epoch_correct[e] = (uint16_t)correct;
    }
    const uint32_t count = measure(t0);
    head_unsaved = 1;
    for (uint32_t e = 0; e < epochs; e++) {
        mt_put("epoch ");
        mt_put_u32(e + 1u);
        mt_put(" loss ");
        put_float3(epoch_loss[e]);
        mt_put_char(' ');
        put_hex32(float_bits(epoch_loss[e]));
        mt_put(" correct ");
        mt_put_u32(epoch_correct[e]);
        mt_put(" of ");
        mt_put_u32(buf_n);
        mt_put_eol();
    }
    put_kv("updates", head.updates);
    mt_put("cost ");
    mt_put(board_counter_unit());
    mt_put(" train ");
    mt_put_u32(count);
    mt_put_eol();
    mt_put_ok();
#endif
}
/* head imprint | head train ...: 1 when arg is one of them (then answered) */
int train_buffer_command(const uint8_t *arg, uint32_t n)
{
    if (word_is(arg, n, "imprint")) {
        cmd_head_imprint();
    } else if (n >= 5u && word_is(arg, 5u, "train") && (n == 5u || arg[5] == ' ')) {
        cmd_head_train(arg + 5, n - 5u);
    } else {
        return 0;
    }
    return 1;
}
#endif
