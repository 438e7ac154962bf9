/* The personalized head (docs/personalization.md) and its commands: `label`, `learn`,
 * `eval`, and `head` (state, reset, config; save, export, import, train and imprint go on to
 * head_storage.c and train_buffer.c). The head is a float copy of the model's last layer that
 * `learn` updates; `classify` uses it once it has taken an update (updates > 0), until then
 * the int8 model's own head answers, byte-identical to TFLite Micro. Also the parsing of the
 * commands' arguments (words, decimals, hex digits, the CRC-framed labelled example). */
#include "app_internal.h"
#include "board.h"
#include "model_api.h"
#include "protocol.h"

#if HAVE_HEAD
extern const mt_head_factory_t mt_model_head; /* generated: gen/head.c */
mt_head_t head;
int head_ready;
int head_unsaved;

void head_boot(void)
{
    head_ready = mt_model_head.feature_dim == mt_model_info.feature_dim &&
                 mt_model_head.num_classes == mt_model_info.num_classes &&
                 mt_head_init(&head, &mt_model_head) == MT_HEAD_OK;
    storage_boot();
}

int head_personalized(void)
{
    return head_ready && head.updates > 0u;
}

/* Scores the features of the last model run with the float head (into head.z). */
uint32_t head_best(void)
{
    const mt_model_info_t *m = &mt_model_info;
    uint32_t best = 0;
    (void)mt_head_scores(&head, mt_model_features(), m->features_q.scale,
                         m->features_q.zero_point, 0, &best);
    return best;
}

/* `head` (three decimals) and `head-bits` (IEEE-754 float32, hex) of every row of the head
 * after head_best(). */
void put_head_scores(void)
{
    const uint32_t rows = mt_head_num_rows(&head);
    mt_put("head");
    for (uint32_t c = 0; c < rows; c++) {
        mt_put_char(' ');
        put_float3(head.z[c]);
    }
    mt_put_eol();
    mt_put("head-bits");
    for (uint32_t c = 0; c < rows; c++) {
        mt_put_char(' ');
        put_hex32(float_bits(head.z[c]));
    }
    mt_put_eol();
}

void put_head_error(int st)
{
    const char *msg;
    switch (st) {
    case MT_HEAD_ENOLABEL:
        msg = "no such label";
        break;
    case MT_HEAD_EEXIST:
        msg = "the label exists already";
        break;
    case MT_HEAD_EFULL:
        msg = "no free label row";
        break;
    case MT_HEAD_EFACTORY:
        msg = "factory labels cannot be removed or renamed";
        break;
    case MT_HEAD_ENAME:
        msg = "a label name is 1 to 23 printable ASCII characters without space";
        break;
    case MT_HEAD_ERANGE:
        msg = "the step would make the head overflow (lower lr or l2): not learned";
        break;
    default:
        msg = "bad argument";
        break;
    }
    put_error(MT_ERR_BAD_ARGUMENT, msg);
}

/* --- arguments --------------------------------------------------------------------------- */

/* The next space-separated word of s[*pos..n): its start in *w, its length returned (0:
 * none). */
static uint32_t next_word(const uint8_t *s, uint32_t n, uint32_t *pos, const uint8_t **w)
{
    uint32_t i = *pos;
    while (i < n && s[i] == ' ') {
        i++;
    }
    const uint32_t start = i;
    while (i < n && s[i] != ' ') {
        i++;
    }
    *w = s + start;
    *pos = i;
    return i - start;
}

/* Copies the next space-separated token of s[*pos..n) into out (NUL-terminated, cut to
 * cap - 1 bytes). Returns 0 when there is none, 1 when it fits, -1 when it is longer. */
static int next_token(const uint8_t *s, uint32_t n, uint32_t *pos, char *out, uint32_t cap)
{
    const uint8_t *w;
    const uint32_t len = next_word(s, n, pos, &w);
    const uint32_t k = len < cap ? len : cap - 1u;
    for (uint32_t i = 0; i < k; i++) {
        out[i] = (char)w[i];
    }
    out[k] = 0;
    return len == 0u ? 0 : len < cap ? 1 : -1;
}

int hex_digit(uint8_t c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

uint32_t parse_u32(const uint8_t *s, uint32_t n, uint32_t *pos, int *ok)
{
    uint32_t v = 0, i = *pos, start;
    while (i < n && s[i] == ' ') {
        i++;
    }
    start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 9u) {
        v = v * 10u + (uint32_t)(s[i] - '0');
        i++;
    }
    if (i == start || (i < n && s[i] != ' ')) {
        *ok = 0;
    }
    *pos = i;
    return v;
}

/* A decimal of at most 7 significant digits and 9 decimals, without exponent ("0.05",
 * "2", ".9"; leading zeros do not count, so its length has no limit): *out =
 * digits / 10^decimals, one correctly rounded float division, so the value is the float
 * nearest to the decimal (numpy.float32("0.05") on the host). Returns 1 if s[0..n) is such
 * a number. */
static int parse_decimal(const uint8_t *s, uint32_t n, float *out)
{
    uint32_t m = 0, digits = 0, decimals = 0, seen = 0;
    int dot = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t ch = s[i];
        if (ch == '.' && !dot) {
            dot = 1;
        } else if (ch >= '0' && ch <= '9') {
            if (m || ch != '0') {
                digits++;
            }
            m = m * 10u + (uint32_t)(ch - '0');
            seen++;
            decimals += (uint32_t)dot;
            if (digits > 7u || decimals > 9u) {
                return 0;
            }
        } else {
            return 0;
        }
    }
    if (seen == 0u) {
        return 0;
    }
    float p = 1.0f;
    for (uint32_t k = 0; k < decimals; k++) {
        p *= 10.0f; /* exact up to 1e10 */
    }
    *out = (float)m / p;
    return 1;
}

/* --- label, learn, head config ------------------------------------------------------------ */

int head_available(void)
{
    if (!head_ready) {
        put_error(MT_ERR_MODEL, "the head does not match the model");
    }
    return head_ready;
}

void put_label_line(const char *key, uint32_t index)
{
    mt_put(key);
    mt_put_char(' ');
    mt_put_u32(index);
    mt_put_char(' ');
    put_str_escaped(mt_head_label(&head, index));
    mt_put_eol();
}

/* `config lr X momentum X l2 X`: three decimals, then the float32 bits of the three */
static void put_config(void)
{
    mt_put("config lr ");
    put_float3(head.lr);
    mt_put(" momentum ");
    put_float3(head.momentum);
    mt_put(" l2 ");
    put_float3(head.l2);
    mt_put_eol();
}

/* label add NAME | label remove NAME | label rename OLD NEW */
void cmd_label(const uint8_t *arg, uint32_t n)
{
    if (!head_available()) {
        return;
    }
    char verb[8], a[MT_HEAD_NAME_BYTES + 1], b[MT_HEAD_NAME_BYTES + 1], extra[2];
    uint32_t pos = 0;
    const int tv = next_token(arg, n, &pos, verb, sizeof verb);
    const int ta = next_token(arg, n, &pos, a, sizeof a);
    const int is_rename = tv == 1 && verb[0] == 'r' && verb[1] == 'e' && verb[2] == 'n';
    const int tb = is_rename ? next_token(arg, n, &pos, b, sizeof b) : 1;
    if (tv != 1 || ta == 0 || tb == 0 || next_token(arg, n, &pos, extra, sizeof extra) != 0) {
        put_error(MT_ERR_BAD_ARGUMENT, "usage: label add NAME | label remove NAME | "
                                       "label rename OLD NEW");
        return;
    }
    const uint8_t *v = (const uint8_t *)verb;
    const uint32_t vn = str_len(verb);
    if (ta < 0 || tb < 0) {
        put_head_error(word_is(v, vn, "add") || tb < 0 ? MT_HEAD_ENAME : MT_HEAD_ENOLABEL);
        return;
    }
    uint32_t index = 0;
    int st;
    if (word_is(v, vn, "add")) {
        st = mt_head_add_label(&head, a, &index);
    } else if (word_is(v, vn, "remove")) {
        st = mt_head_find_label(&head, a, &index);
        if (st == MT_HEAD_OK) {
            st = mt_head_remove_label(&head, a);
        }
    } else if (word_is(v, vn, "rename")) {
        st = mt_head_rename_label(&head, a, b);
        if (st == MT_HEAD_OK) {
            st = mt_head_find_label(&head, b, &index);
        }
    } else {
        put_error(MT_ERR_BAD_ARGUMENT, "usage: label add NAME | label remove NAME | "
                                       "label rename OLD NEW");
        return;
    }
    if (st != MT_HEAD_OK) {
        put_head_error(st);
        return;
    }
    head_unsaved = 1;
    if (!word_is(v, vn, "remove")) {
        put_label_line("label", index);
    } else {
        buffer_drop_row(index);
    }
    mt_put_ok();
}

static int model_input_ok(void)
{
    const mt_model_info_t *m = &mt_model_info;
    if (m->seq_len > MT_MAX_SEQ_LEN ||
        m->tokenizer.max_words * m->tokenizer.features_per_word != m->seq_len) {
        put_error(MT_ERR_MODEL, "model input does not match the firmware build");
        return 0;
    }
    return 1;
}

/* `<crc32 hex> LABEL<TAB>text` (learn, eval): checks the CRC-32 (zlib's) of every byte after
 * the space that follows it, finds the label; on success returns 1 with the row and the
 * text, otherwise answers the error and returns 0. */
static int parse_labelled(const uint8_t *arg, uint32_t n, const char *verb, uint32_t *y,
                          const uint8_t **text, uint32_t *tn)
{
    uint32_t want = 0;
    int ok = n >= 9u && arg[8] == ' ';
    for (uint32_t i = 0; ok && i < 8u; i++) {
        const int d = hex_digit(arg[i]);
        ok = d >= 0;
        want = want << 4 | (uint32_t)(d & 15);
    }
    const int is_learn = verb[0] == 'l';
    const int is_keep = verb[0] == 'k';
    const char *usage = is_learn ? "usage: learn <crc32 hex> LABEL<TAB>text"
                        : is_keep ? "usage: keep <crc32 hex> LABEL<TAB>text"
                                  : "usage: eval <crc32 hex> LABEL<TAB>text | eval reset";
    if (!ok) {
        put_error(MT_ERR_BAD_ARGUMENT, usage);
        return 0;
    }
    const uint8_t *payload = arg + 9;
    const uint32_t pn = n - 9u;
    if (mt_crc32(0, payload, pn) != want) {
        put_error(MT_ERR_CRC, is_learn  ? "CRC mismatch: example not learned"
                              : is_keep ? "CRC mismatch: example not kept"
                                        : "CRC mismatch: example not evaluated");
        return 0;
    }
    uint32_t tab = 0;
    while (tab < pn && payload[tab] != '\t') {
        tab++;
    }
    char name[64];
    if (tab == pn || tab == 0u || tab >= sizeof name) {
        put_error(MT_ERR_BAD_ARGUMENT, tab == pn ? usage : "no such label");
        return 0;
    }
    for (uint32_t i = 0; i < tab; i++) {
        name[i] = (char)payload[i];
    }
    name[tab] = 0;
    const int st = mt_head_find_label(&head, name, y);
    if (st != MT_HEAD_OK) {
        put_head_error(st);
        return 0;
    }
    *text = payload + tab + 1u;
    *tn = pn - tab - 1u;
    return 1;
}

/* The common part of learn, keep and eval: the framed example checked, its label found and
 * the model run on its text. Returns 1 with the row in *y and the run in *r, otherwise
 * answers the error and returns 0. */
int run_labelled(const uint8_t *arg, uint32_t n, const char *verb, uint32_t *y,
                        run_result_t *r)
{
    const uint8_t *text = 0;
    uint32_t tn = 0;
    if (!parse_labelled(arg, n, verb, y, &text, &tn) || !model_input_ok()) {
        return 0;
    }
    *r = run_model(text, tn);
    if (r->status != 0) {
        put_error(MT_ERR_MODEL, "model run failed");
        return 0;
    }
    return 1;
}

/* learn <crc32 hex> LABEL<TAB>text: one SGD step of the head on the example. */
void cmd_learn(const uint8_t *arg, uint32_t n)
{
    if (!head_available()) {
        return;
    }
    uint32_t y = 0;
    run_result_t r;
    if (!run_labelled(arg, n, "learn", &y, &r)) {
        return;
    }
    /* what classify would have answered before this step */
    const uint32_t before = head_personalized() ? head_best() : int8_best();
    const char *before_name = head_personalized() ? mt_head_label(&head, before)
                                                  : mt_model_info.labels[before];
    const mt_model_info_t *m = &mt_model_info;
    float loss = 0.0f;
    const uint32_t t0 = board_counter_ticks();
    const int st2 = mt_head_step(&head, mt_model_features(), m->features_q.scale,
                                 m->features_q.zero_point, y, &loss);
    const uint32_t step_count = measure(t0);
    if (st2 != MT_HEAD_OK) {
        put_head_error(st2);
        return;
    }
    mt_put("loss ");
    put_float3(loss);
    mt_put_char(' ');
    put_hex32(float_bits(loss));
    mt_put_eol();
    mt_put("predicted ");
    mt_put_u32(before);
    mt_put_char(' ');
    put_str_escaped(before_name);
    mt_put_eol();
    buffer_add(mt_model_features(), y);
    head_unsaved = 1;
    put_label_line("learned", y);
    put_kv("updates", head.updates);
    mt_put("cost ");
    mt_put(board_counter_unit());
    mt_put(" tokenizer ");
    mt_put_u32(r.tokenizer_count);
    mt_put(" model ");
    mt_put_u32(r.model_count);
    mt_put(" step ");
    mt_put_u32(step_count);
    mt_put_eol();
    mt_put_ok();
}

/* head config [lr X] [momentum X] [l2 X]: the update rule's parameters */
static void cmd_head_config(const uint8_t *arg, uint32_t n)
{
    float v[3] = {head.lr, head.momentum, head.l2};
    static const char *const keys[3] = {"lr", "momentum", "l2"};
    uint32_t pos = 0;
    for (;;) {
        const uint8_t *key, *val;
        const uint32_t kn = next_word(arg, n, &pos, &key);
        if (kn == 0u) {
            break;
        }
        const uint32_t vn = next_word(arg, n, &pos, &val);
        int k = 0;
        while (k < 3 && !word_is(key, kn, keys[k])) {
            k++;
        }
        float x = 0.0f;
        if (vn == 0u || k == 3 || !parse_decimal(val, vn, &x)) {
            put_error(MT_ERR_BAD_ARGUMENT, "usage: head config [lr X] [momentum X] [l2 X] "
                                           "(decimals, e.g. 0.05)");
            return;
        }
        v[k] = x;
    }
#if !MT_HEAD_MOMENTUM
    if (v[1] != 0.0f) {
        put_error(MT_ERR_BAD_ARGUMENT, "built without momentum buffers (MT_HEAD_MOMENTUM 0)");
        return;
    }
#endif
    if (!(v[0] > 0.0f && v[0] <= 100.0f && v[1] < 1.0f && v[2] <= 100.0f)) {
        put_error(MT_ERR_BAD_ARGUMENT, "lr in (0, 100], momentum in [0, 1), l2 in [0, 100]");
        return;
    }
    mt_head_config(&head, v[0], v[1], v[2]);
    put_config();
    mt_put_ok();
}

/* --- eval: classify a labelled example without learning --------------------------------- */

static uint32_t eval_correct, eval_total;

/* eval <crc32 hex> LABEL<TAB>text (framed as learn) | eval reset */
void cmd_eval(const uint8_t *arg, uint32_t n)
{
    if (!head_available()) {
        return;
    }
    if (word_is(arg, n, "reset")) {
        eval_correct = eval_total = 0;
        mt_put_ok();
        return;
    }
    uint32_t y = 0;
    run_result_t r;
    if (!run_labelled(arg, n, "eval", &y, &r)) {
        return;
    }
    (void)r;
    const mt_model_info_t *m = &mt_model_info;
    float loss = 0.0f;
    uint32_t fbest = 0;
    (void)mt_head_loss(&head, mt_model_features(), m->features_q.scale, m->features_q.zero_point,
                       y, &loss, &fbest);
    /* the answer classify gives: the int8 model until the first update */
    const uint32_t best = head_personalized() ? fbest : int8_best();
    const char *name = head_personalized() ? mt_head_label(&head, best) : m->labels[best];
    count_one(&eval_total);
    if (best == y) {
        count_one(&eval_correct);
    }
    mt_put("predicted ");
    mt_put_u32(best);
    mt_put_char(' ');
    put_str_escaped(name);
    mt_put_eol();
    put_kv("correct", best == y ? 1u : 0u);
    mt_put("loss ");
    put_float3(loss);
    mt_put_char(' ');
    put_hex32(float_bits(loss));
    mt_put_eol();
    put_used_of("tally", eval_correct, eval_total);
    mt_put_ok();
}

/* head state | head reset | head config ... */
void cmd_head(const uint8_t *arg, uint32_t n)
{
    if (!head_available()) {
        return;
    }
    if (word_is(arg, n, "reset")) {
        mt_head_reset(&head);
        buffer_clear();
        head_unsaved = 1;
        mt_put_ok();
        return;
    }
    if (head_storage_command(arg, n) || train_buffer_command(arg, n)) {
        return;
    }
    if (n >= 6u && word_is(arg, 6u, "config") && (n == 6u || arg[6] == ' ')) {
        cmd_head_config(arg + 6, n - 6u);
        return;
    }
    if (!word_is(arg, n, "state")) {
        put_error(MT_ERR_BAD_ARGUMENT, "usage: head state | head reset | head config ... | "
                                       "head export | head import ... | head save | "
                                       "head train EPOCHS | head imprint");
        return;
    }
    const uint32_t rows = mt_head_num_rows(&head);
    uint32_t added = 0;
    for (uint32_t c = head.c0; c < rows; c++) {
        added += (head.flags[c] & MT_HEAD_ROW_ACTIVE) ? 1u : 0u;
    }
    put_kv("updates", head.updates);
    put_kv("personalized", (uint32_t)head_personalized());
    put_kv("rows", rows);
    put_kv("feature-dim", head.h);
    put_used_of("new-labels", added, rows - head.c0);
    put_config();
    for (uint32_t c = 0; c < rows; c++) {
        const char *name = mt_head_label(&head, c);
        if (name) {
            mt_put("label ");
            mt_put_u32(c);
            mt_put_char(' ');
            put_str_escaped(name);
            mt_put(c < head.c0 ? " factory"
                   : (head.flags[c] & MT_HEAD_ROW_FRESH) ? " fresh" : " added");
            mt_put_eol();
        }
    }
    put_used_of("buffer", buffer_count(), MT_TRAIN_BUFFER);
    put_storage_state();
    mt_put_ok();
}
#endif
