/*
 * rkllm_twin: an ABI twin of Rockchip's RKLLM runtime (librkllmrt.so), for tests on machines
 * without an NPU. It exports the runtime's functions with the struct layouts of one runtime
 * version, chosen at compile time:
 *
 *   gcc -shared -fPIC -O2 -pthread -DRKLLM_TWIN_API=12 -o librkllm_twin-1.2.so rkllm_twin.c
 *   gcc -shared -fPIC -O2 -pthread -DRKLLM_TWIN_API=13 -o librkllm_twin-1.3.so rkllm_twin.c
 *
 * Optional: -DRKLLM_TWIN_OMIT_FUNCTION_TOOLS leaves rkllm_set_function_tools out (a library with
 * a missing symbol); -DRKLLM_TWIN_DIRTY_DEFAULTS returns defaults whose reserved bytes are not zero
 * (a library whose layout cannot be told from its defaults).
 *
 * What it does, like the runtime: it loads a "model" (a text file starting with RKLLM-TWIN), runs
 * each generation on a thread of its own and calls back from it once per token (WAITING while a
 * UTF-8 character is incomplete), then once with FINISH or ERROR. It returns -1 on bad input.
 *
 * What it does for tests: tokens are deterministic (a function of the input); directives in a
 * prompt steer a run after N tokens ("[eos:N]", "[error:N]", "[crash:N]" a segfault, "[abort:N]"
 * abort(), "[hang:N]" no more callbacks, abort ignored) or all along ("[utf8]", "[slow:US]");
 * a chat template whose system prompt has "[refuse-second]" is refused by every second process
 * that sets it, with RKLLM_TWIN_REFUSE_SECOND=FILE (the first creates FILE, the second removes it);
 * a model file with the line "echo=1" answers every run with one token holding a JSON echo of
 * every field the twin received, so tests can prove each field is written at the right offset;
 * and rkllm_twin_layout() returns the sizes and offsets of every struct as this compiler laid
 * them out.
 */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if RKLLM_TWIN_API == 12
#define TWIN_VERSION "1.2.1"
#elif RKLLM_TWIN_API == 13
#define TWIN_VERSION "1.3.0"
#else
#error "compile with -DRKLLM_TWIN_API=12 or -DRKLLM_TWIN_API=13"
#endif

#define TWIN_EXPORT __attribute__((visibility("default")))
#define TWIN_MAX_LORAS 8
#define TWIN_MAX_BATCH 8
#define TWIN_EOS_ID 2

/* ---------------------------------------------------------------- the runtime's types */

typedef void *LLMHandle;

typedef enum { RKLLM_RUN_NORMAL = 0, RKLLM_RUN_WAITING = 1, RKLLM_RUN_FINISH = 2, RKLLM_RUN_ERROR = 3 } LLMCallState;
typedef enum { RKLLM_INPUT_PROMPT = 0, RKLLM_INPUT_TOKEN = 1, RKLLM_INPUT_EMBED = 2, RKLLM_INPUT_MULTIMODAL = 3 } RKLLMInputType;
typedef enum { RKLLM_INFER_GENERATE = 0, RKLLM_INFER_GET_LAST_HIDDEN_LAYER = 1, RKLLM_INFER_GET_LOGITS = 2 } RKLLMInferMode;

typedef struct {
    int32_t base_domain_id;
    int8_t embed_flash;
    int8_t enabled_cpus_num;
    uint32_t enabled_cpus_mask;
    uint8_t n_batch;
    int8_t use_cross_attn;
    uint8_t reserved[104];
} RKLLMExtendParam;

typedef struct {
    const char *model_path;
    int32_t max_context_len;
    int32_t max_new_tokens;
    int32_t top_k;
    int32_t n_keep;
    float top_p;
    float temperature;
    float repeat_penalty;
    float frequency_penalty;
    float presence_penalty;
    int32_t mirostat;
    float mirostat_tau;
    float mirostat_eta;
    bool skip_special_token;
#if RKLLM_TWIN_API >= 13
    bool ignore_eos_token;
#endif
    bool is_async;
#if RKLLM_TWIN_API == 12
    const char *img_start;
    const char *img_end;
    const char *img_content;
#endif
    RKLLMExtendParam extend_param;
} RKLLMParam;

typedef struct {
    const char *lora_adapter_path;
    const char *lora_adapter_name;
    float scale;
} RKLLMLoraAdapter;

typedef struct {
    float *embed;
    size_t n_tokens;
} RKLLMEmbedInput;

typedef struct {
    int32_t *input_ids;
    size_t n_tokens;
} RKLLMTokenInput;

#if RKLLM_TWIN_API == 12
typedef struct {
    char *prompt;
    float *image_embed;
    size_t n_image_tokens;
    size_t n_image;
    size_t image_width;
    size_t image_height;
} RKLLMMultiModalInput;
#else
typedef struct {
    float *image_embed;
    size_t n_image_tokens;
    size_t n_image;
    const char *image_start;
    const char *image_end;
    const char *image_content;
    size_t image_width;
    size_t image_height;
} RKLLMImageInput;

typedef struct {
    float *video_embed;
    size_t n_frame_tokens;
    size_t n_frame_per_video;
    size_t n_video;
    const char *video_start;
    const char *video_end;
    const char *video_content;
    size_t frame_width;
    size_t frame_height;
} RKLLMVideoInput;

typedef struct {
    char *prompt;
    RKLLMImageInput image;
    RKLLMVideoInput video;
} RKLLMMultiModalInput;
#endif

typedef struct {
    const char *role;
    bool enable_thinking;
    RKLLMInputType input_type;
    union {
        const char *prompt_input;
        RKLLMEmbedInput embed_input;
        RKLLMTokenInput token_input;
        RKLLMMultiModalInput multimodal_input;
    };
} RKLLMInput;

typedef struct {
    const char *lora_adapter_name;
} RKLLMLoraParam;

typedef struct {
    int save_prompt_cache;
    const char *prompt_cache_path;
} RKLLMPromptCacheParam;

typedef struct {
    float *encoder_k_cache;
    float *encoder_v_cache;
    float *encoder_mask;
    int32_t *encoder_pos;
    int num_tokens;
} RKLLMCrossAttnParam;

#if RKLLM_TWIN_API >= 13
typedef struct {
    int32_t top_k;
    float top_p;
    float temperature;
    float repeat_penalty;
    float frequency_penalty;
    float presence_penalty;
    int32_t mirostat;
    float mirostat_tau;
    float mirostat_eta;
} RKLLMSamplingParam;
#endif

typedef struct {
    RKLLMInferMode mode;
    RKLLMLoraParam *lora_params;
    RKLLMPromptCacheParam *prompt_cache_params;
#if RKLLM_TWIN_API >= 13
    RKLLMSamplingParam *sampling_params;
#endif
    int keep_history;
#if RKLLM_TWIN_API >= 13
    int32_t max_new_tokens;
#endif
} RKLLMInferParam;

typedef struct {
    const float *hidden_states;
    int embd_size;
    int num_tokens;
} RKLLMResultLastHiddenLayer;

typedef struct {
    const float *logits;
    int vocab_size;
    int num_tokens;
} RKLLMResultLogits;

typedef struct {
    float prefill_time_ms;
    int prefill_tokens;
    float generate_time_ms;
    int generate_tokens;
    float memory_usage_mb;
} RKLLMPerfStat;

typedef struct {
    const char *text;
    int32_t token_id;
    RKLLMResultLastHiddenLayer last_hidden_layer;
    RKLLMResultLogits logits;
    RKLLMPerfStat perf;
} RKLLMResult;

typedef int (*LLMResultCallback)(RKLLMResult *result, void *userdata, LLMCallState state);

#if RKLLM_TWIN_API >= 13
typedef int (*LLMTokenizerCallback)(void *userdata, const char *text, int32_t text_len, int32_t *tokens, int32_t n_tokens_max);
typedef int (*LLMGetEmbedCallback)(void *userdata, int32_t *tokens, uint64_t num_tokens, void *embed, uint64_t len);

typedef struct {
    LLMResultCallback result_callback;
    void *result_userdata;
    LLMTokenizerCallback tokenizer_callback;
    void *tokenizer_userdata;
    LLMGetEmbedCallback embed_callback;
    void *embed_userdata;
} RKLLMCallback;
#endif

/* ---------------------------------------------------------------- a growable string (JSON) */

typedef struct {
    char *buf;
    size_t len, cap;
} Str;

static void str_put(Str *s, const char *data, size_t n) {
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1) cap *= 2;
        s->buf = realloc(s->buf, cap);
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    s->buf[s->len] = 0;
}

static void str_printf(Str *s, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    str_put(s, tmp, n < (int)sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string, or null for a NULL pointer. Bytes >= 0x80 pass through (UTF-8). */
static void json_str(Str *s, const char *v) {
    if (!v) {
        str_put(s, "null", 4);
        return;
    }
    str_put(s, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            str_put(s, esc, 2);
        } else if (*p < 0x20) {
            str_printf(s, "\\u%04x", *p);
        } else {
            str_put(s, (const char *)p, 1);
        }
    }
    str_put(s, "\"", 1);
}

static void json_key(Str *s, const char *key) {
    if (s->len > 0 && s->buf[s->len - 1] != '{') str_put(s, ",", 1);
    json_str(s, key);
    str_put(s, ":", 1);
}

static void json_floats(Str *s, const float *v, size_t n) {
    if (!v) {
        str_put(s, "null", 4);
        return;
    }
    str_put(s, "[", 1);
    for (size_t i = 0; i < n; i++) str_printf(s, i ? ",%.9g" : "%.9g", (double)v[i]);
    str_put(s, "]", 1);
}

static void json_ints(Str *s, const int32_t *v, size_t n) {
    if (!v) {
        str_put(s, "null", 4);
        return;
    }
    str_put(s, "[", 1);
    for (size_t i = 0; i < n; i++) str_printf(s, i ? ",%d" : "%d", v[i]);
    str_put(s, "]", 1);
}

/* ---------------------------------------------------------------- the handle */

typedef struct {
    char *path, *name;
    float scale;
} Lora;

typedef struct {
    float *k, *v, *mask;
    int32_t *pos;
    int num_tokens;
} CrossAttn;

typedef struct Twin {
    RKLLMParam param; /* strings point into the copies below */
    char *model_path;
#if RKLLM_TWIN_API == 12
    char *img_start, *img_end, *img_content;
#endif
    LLMResultCallback callback;
    void *callback_userdata;
    char *callback_echo; /* JSON: what rkllm_init's callback argument held */

    /* the "model": settings read from the model file */
    bool echo;
    int token_delay_us;
    int embd_size;
    int vocab_size;

    char *system_prompt, *prompt_prefix, *prompt_postfix;
    char *tools_system_prompt, *tools, *tool_response_str;
    Lora loras[TWIN_MAX_LORAS];
    int n_loras;
    char *prompt_cache;
    CrossAttn cross_attn;
    bool has_cross_attn;
    char *last_clear; /* JSON of the last rkllm_clear_kv_cache call */
    int kv_cache[TWIN_MAX_BATCH];

    pthread_mutex_t lock;
    bool running;
    volatile bool abort_requested;
    pthread_t thread;
    bool joinable;
} Twin;

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int n_batch(const Twin *t) {
    int n = t->param.extend_param.n_batch;
    return n < 1 ? 1 : n;
}

static void log_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("E rkllm: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
}

static bool file_exists(const char *path) {
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (f) fclose(f);
    return f != NULL;
}

/* Reads the model file: "RKLLM-TWIN" on the first line, then optional key=value lines. */
static int read_model(Twin *t, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        log_error("failed to open model file %s", path);
        return -1;
    }
    char line[256];
    if (!fgets(line, sizeof line, f) || strncmp(line, "RKLLM-TWIN", 10) != 0) {
        fclose(f);
        log_error("%s is not an RKLLM model file (bad magic)", path);
        return -1;
    }
    t->token_delay_us = 0;
    t->embd_size = 8;
    t->vocab_size = 512;
    while (fgets(line, sizeof line, f)) {
        int value;
        if (sscanf(line, "echo=%d", &value) == 1) t->echo = value != 0;
        if (sscanf(line, "token_delay_us=%d", &value) == 1) t->token_delay_us = value;
        if (sscanf(line, "embd_size=%d", &value) == 1 && value > 0) t->embd_size = value;
        if (sscanf(line, "vocab_size=%d", &value) == 1 && value > 3) t->vocab_size = value;
    }
    fclose(f);
    return 0;
}

/* ---------------------------------------------------------------- echo of what was received */

static void echo_param(Str *s, const RKLLMParam *p) {
    str_put(s, "{", 1);
    json_key(s, "model_path"), json_str(s, p->model_path);
    json_key(s, "max_context_len"), str_printf(s, "%d", p->max_context_len);
    json_key(s, "max_new_tokens"), str_printf(s, "%d", p->max_new_tokens);
    json_key(s, "top_k"), str_printf(s, "%d", p->top_k);
    json_key(s, "n_keep"), str_printf(s, "%d", p->n_keep);
    json_key(s, "top_p"), str_printf(s, "%.9g", (double)p->top_p);
    json_key(s, "temperature"), str_printf(s, "%.9g", (double)p->temperature);
    json_key(s, "repeat_penalty"), str_printf(s, "%.9g", (double)p->repeat_penalty);
    json_key(s, "frequency_penalty"), str_printf(s, "%.9g", (double)p->frequency_penalty);
    json_key(s, "presence_penalty"), str_printf(s, "%.9g", (double)p->presence_penalty);
    json_key(s, "mirostat"), str_printf(s, "%d", p->mirostat);
    json_key(s, "mirostat_tau"), str_printf(s, "%.9g", (double)p->mirostat_tau);
    json_key(s, "mirostat_eta"), str_printf(s, "%.9g", (double)p->mirostat_eta);
    json_key(s, "skip_special_token"), str_printf(s, "%s", p->skip_special_token ? "true" : "false");
#if RKLLM_TWIN_API >= 13
    json_key(s, "ignore_eos_token"), str_printf(s, "%s", p->ignore_eos_token ? "true" : "false");
#endif
    json_key(s, "is_async"), str_printf(s, "%s", p->is_async ? "true" : "false");
#if RKLLM_TWIN_API == 12
    json_key(s, "img_start"), json_str(s, p->img_start);
    json_key(s, "img_end"), json_str(s, p->img_end);
    json_key(s, "img_content"), json_str(s, p->img_content);
#endif
    const RKLLMExtendParam *e = &p->extend_param;
    int nonzero = 0;
    for (size_t i = 0; i < sizeof e->reserved; i++) nonzero += e->reserved[i] != 0;
    json_key(s, "extend_param");
    str_put(s, "{", 1);
    json_key(s, "base_domain_id"), str_printf(s, "%d", e->base_domain_id);
    json_key(s, "embed_flash"), str_printf(s, "%d", e->embed_flash);
    json_key(s, "enabled_cpus_num"), str_printf(s, "%d", e->enabled_cpus_num);
    json_key(s, "enabled_cpus_mask"), str_printf(s, "%u", e->enabled_cpus_mask);
    json_key(s, "n_batch"), str_printf(s, "%u", e->n_batch);
    json_key(s, "use_cross_attn"), str_printf(s, "%d", e->use_cross_attn);
    json_key(s, "reserved_nonzero_bytes"), str_printf(s, "%d", nonzero);
    str_put(s, "}}", 2);
}

static void echo_multimodal(Str *s, const Twin *t, const RKLLMMultiModalInput *m) {
    str_put(s, "{", 1);
    json_key(s, "prompt"), json_str(s, m->prompt);
#if RKLLM_TWIN_API == 12
    json_key(s, "image_embed"), json_floats(s, m->image_embed, m->n_image * m->n_image_tokens * (size_t)t->embd_size);
    json_key(s, "n_image_tokens"), str_printf(s, "%zu", m->n_image_tokens);
    json_key(s, "n_image"), str_printf(s, "%zu", m->n_image);
    json_key(s, "image_width"), str_printf(s, "%zu", m->image_width);
    json_key(s, "image_height"), str_printf(s, "%zu", m->image_height);
#else
    const RKLLMImageInput *i = &m->image;
    json_key(s, "image");
    str_put(s, "{", 1);
    json_key(s, "image_embed"), json_floats(s, i->image_embed, i->n_image * i->n_image_tokens * (size_t)t->embd_size);
    json_key(s, "n_image_tokens"), str_printf(s, "%zu", i->n_image_tokens);
    json_key(s, "n_image"), str_printf(s, "%zu", i->n_image);
    json_key(s, "image_start"), json_str(s, i->image_start);
    json_key(s, "image_end"), json_str(s, i->image_end);
    json_key(s, "image_content"), json_str(s, i->image_content);
    json_key(s, "image_width"), str_printf(s, "%zu", i->image_width);
    json_key(s, "image_height"), str_printf(s, "%zu", i->image_height);
    str_put(s, "}", 1);
    const RKLLMVideoInput *v = &m->video;
    json_key(s, "video");
    str_put(s, "{", 1);
    json_key(s, "video_embed"),
        json_floats(s, v->video_embed, v->n_video * v->n_frame_per_video * v->n_frame_tokens * (size_t)t->embd_size);
    json_key(s, "n_frame_tokens"), str_printf(s, "%zu", v->n_frame_tokens);
    json_key(s, "n_frame_per_video"), str_printf(s, "%zu", v->n_frame_per_video);
    json_key(s, "n_video"), str_printf(s, "%zu", v->n_video);
    json_key(s, "video_start"), json_str(s, v->video_start);
    json_key(s, "video_end"), json_str(s, v->video_end);
    json_key(s, "video_content"), json_str(s, v->video_content);
    json_key(s, "frame_width"), str_printf(s, "%zu", v->frame_width);
    json_key(s, "frame_height"), str_printf(s, "%zu", v->frame_height);
    str_put(s, "}", 1);
#endif
    str_put(s, "}", 1);
}

static void echo_input(Str *s, const Twin *t, const RKLLMInput *in) {
    str_put(s, "{", 1);
    json_key(s, "role"), json_str(s, in->role);
    json_key(s, "enable_thinking"), str_printf(s, "%s", in->enable_thinking ? "true" : "false");
    json_key(s, "input_type"), str_printf(s, "%d", (int)in->input_type);
    switch (in->input_type) {
    case RKLLM_INPUT_PROMPT:
        json_key(s, "prompt_input"), json_str(s, in->prompt_input);
        break;
    case RKLLM_INPUT_TOKEN:
        json_key(s, "token_input"), str_put(s, "{", 1);
        json_key(s, "input_ids"), json_ints(s, in->token_input.input_ids, in->token_input.n_tokens);
        json_key(s, "n_tokens"), str_printf(s, "%zu}", in->token_input.n_tokens);
        break;
    case RKLLM_INPUT_EMBED:
        json_key(s, "embed_input"), str_put(s, "{", 1);
        json_key(s, "embed"), json_floats(s, in->embed_input.embed, in->embed_input.n_tokens * (size_t)t->embd_size);
        json_key(s, "n_tokens"), str_printf(s, "%zu}", in->embed_input.n_tokens);
        break;
    case RKLLM_INPUT_MULTIMODAL:
        json_key(s, "multimodal_input"), echo_multimodal(s, t, &in->multimodal_input);
        break;
    }
    str_put(s, "}", 1);
}

static void echo_infer(Str *s, const RKLLMInferParam *p) {
    str_put(s, "{", 1);
    json_key(s, "mode"), str_printf(s, "%d", (int)p->mode);
    json_key(s, "lora_params");
    if (p->lora_params) {
        str_put(s, "{", 1);
        json_key(s, "lora_adapter_name"), json_str(s, p->lora_params->lora_adapter_name);
        str_put(s, "}", 1);
    } else {
        str_put(s, "null", 4);
    }
    json_key(s, "prompt_cache_params");
    if (p->prompt_cache_params) {
        str_put(s, "{", 1);
        json_key(s, "save_prompt_cache"), str_printf(s, "%d", p->prompt_cache_params->save_prompt_cache);
        json_key(s, "prompt_cache_path"), json_str(s, p->prompt_cache_params->prompt_cache_path);
        str_put(s, "}", 1);
    } else {
        str_put(s, "null", 4);
    }
#if RKLLM_TWIN_API >= 13
    json_key(s, "sampling_params");
    const RKLLMSamplingParam *sp = p->sampling_params;
    if (sp) {
        str_put(s, "{", 1);
        json_key(s, "top_k"), str_printf(s, "%d", sp->top_k);
        json_key(s, "top_p"), str_printf(s, "%.9g", (double)sp->top_p);
        json_key(s, "temperature"), str_printf(s, "%.9g", (double)sp->temperature);
        json_key(s, "repeat_penalty"), str_printf(s, "%.9g", (double)sp->repeat_penalty);
        json_key(s, "frequency_penalty"), str_printf(s, "%.9g", (double)sp->frequency_penalty);
        json_key(s, "presence_penalty"), str_printf(s, "%.9g", (double)sp->presence_penalty);
        json_key(s, "mirostat"), str_printf(s, "%d", sp->mirostat);
        json_key(s, "mirostat_tau"), str_printf(s, "%.9g", (double)sp->mirostat_tau);
        json_key(s, "mirostat_eta"), str_printf(s, "%.9g", (double)sp->mirostat_eta);
        str_put(s, "}", 1);
    } else {
        str_put(s, "null", 4);
    }
#endif
    json_key(s, "keep_history"), str_printf(s, "%d", p->keep_history);
#if RKLLM_TWIN_API >= 13
    json_key(s, "max_new_tokens"), str_printf(s, "%d", p->max_new_tokens);
#endif
    str_put(s, "}", 1);
}

/* Everything the twin holds and the run received, as one JSON object. */
static char *echo_all(Twin *t, const RKLLMInput *in, const RKLLMInferParam *infer, void *userdata) {
    Str s = {0};
    str_put(&s, "{", 1);
    json_key(&s, "runtime"), json_str(&s, TWIN_VERSION);
    json_key(&s, "param"), echo_param(&s, &t->param);
    json_key(&s, "callback"), str_put(&s, t->callback_echo, strlen(t->callback_echo));
    json_key(&s, "userdata"), str_printf(&s, "%llu", (unsigned long long)(uintptr_t)userdata);
    json_key(&s, "input"), echo_input(&s, t, in);
    json_key(&s, "infer"), echo_infer(&s, infer);
    json_key(&s, "loras");
    str_put(&s, "[", 1);
    for (int i = 0; i < t->n_loras; i++) {
        str_put(&s, i ? ",{" : "{", i ? 2 : 1);
        json_key(&s, "lora_adapter_path"), json_str(&s, t->loras[i].path);
        json_key(&s, "lora_adapter_name"), json_str(&s, t->loras[i].name);
        json_key(&s, "scale"), str_printf(&s, "%.9g}", (double)t->loras[i].scale);
    }
    str_put(&s, "]", 1);
    json_key(&s, "prompt_cache"), json_str(&s, t->prompt_cache);
    json_key(&s, "chat_template");
    str_put(&s, "{", 1);
    json_key(&s, "system_prompt"), json_str(&s, t->system_prompt);
    json_key(&s, "prompt_prefix"), json_str(&s, t->prompt_prefix);
    json_key(&s, "prompt_postfix"), json_str(&s, t->prompt_postfix);
    str_put(&s, "}", 1);
    json_key(&s, "function_tools");
    str_put(&s, "{", 1);
    json_key(&s, "system_prompt"), json_str(&s, t->tools_system_prompt);
    json_key(&s, "tools"), json_str(&s, t->tools);
    json_key(&s, "tool_response_str"), json_str(&s, t->tool_response_str);
    str_put(&s, "}", 1);
    json_key(&s, "cross_attn");
    if (t->has_cross_attn) {
        const CrossAttn *c = &t->cross_attn;
        size_t cache = (size_t)c->num_tokens * (size_t)t->embd_size;
        str_put(&s, "{", 1);
        json_key(&s, "encoder_k_cache"), json_floats(&s, c->k, cache);
        json_key(&s, "encoder_v_cache"), json_floats(&s, c->v, cache);
        json_key(&s, "encoder_mask"), json_floats(&s, c->mask, (size_t)c->num_tokens);
        json_key(&s, "encoder_pos"), json_ints(&s, c->pos, (size_t)c->num_tokens);
        json_key(&s, "num_tokens"), str_printf(&s, "%d}", c->num_tokens);
    } else {
        str_put(&s, "null", 4);
    }
    json_key(&s, "last_clear_kv_cache");
    if (t->last_clear) str_put(&s, t->last_clear, strlen(t->last_clear));
    else str_put(&s, "null", 4);
    str_put(&s, "}", 1);
    return s.buf;
}

/* ---------------------------------------------------------------- deterministic generation */

static const char *const WORDS[] = {"the", "rabbit", "ran", "down", "a", "long", "hall", "and", "saw", "small",
                                    "door", "behind", "curtain", "it", "was", "locked", "so", "she", "tried", "key"};
static const char *const UTF8_WORDS[] = {"café", "naïve", "über", "señor", "日本", "😀", "–", "ça"};
#define N_WORDS (sizeof WORDS / sizeof *WORDS)
#define N_UTF8_WORDS (sizeof UTF8_WORDS / sizeof *UTF8_WORDS)

/* One callback's worth of output. */
typedef struct {
    char text[8];
    int32_t id;
    LLMCallState state;
} Token;

typedef struct {
    Token *items;
    size_t len, cap;
} Tokens;

static void tokens_push(Tokens *ts, const char *text, size_t n, int32_t id, LLMCallState state) {
    if (ts->len == ts->cap) {
        ts->cap = ts->cap ? ts->cap * 2 : 64;
        ts->items = realloc(ts->items, ts->cap * sizeof *ts->items);
    }
    Token *t = &ts->items[ts->len++];
    memcpy(t->text, text, n);
    t->text[n] = 0;
    t->id = id;
    t->state = state;
}

static size_t utf8_length(unsigned char lead) {
    if (lead >= 0xF0) return 4;
    if (lead >= 0xE0) return 3;
    if (lead >= 0xC0) return 2;
    return 1;
}

/*
 * Splits one word into tokens: ASCII in pieces of up to 4 bytes; a multi-byte character as one
 * token per byte, WAITING (with the bytes so far) until the last, which is NORMAL and holds the
 * whole character, as the runtime does.
 */
static void tokenize_word(Tokens *ts, const char *word, int32_t id) {
    const unsigned char *p = (const unsigned char *)word;
    size_t i = 0, n = strlen(word);
    while (i < n) {
        size_t len = utf8_length(p[i]);
        if (len > 1) {
            for (size_t k = 1; k < len; k++) tokens_push(ts, word + i, k, id, RKLLM_RUN_WAITING);
            tokens_push(ts, word + i, len, id, RKLLM_RUN_NORMAL);
            i += len;
            continue;
        }
        size_t run = 0;
        while (i + run < n && run < 4 && p[i + run] < 0x80) run++;
        tokens_push(ts, word + i, run, id, RKLLM_RUN_NORMAL);
        i += run;
    }
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* At least `count` tokens of deterministic story text, seeded by the input. */
static Tokens story(uint64_t seed, bool utf8, size_t count) {
    Tokens ts = {0};
    uint64_t state = seed;
    for (size_t w = 0; ts.len < count; w++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t pick = (size_t)(state >> 33);
        bool special = utf8 && w % 4 == 3;
        const char *word = special ? UTF8_WORDS[pick % N_UTF8_WORDS] : WORDS[pick % N_WORDS];
        char buf[32];
        snprintf(buf, sizeof buf, " %s", word);
        tokenize_word(&ts, buf, (int32_t)(3 + (special ? N_WORDS + pick % N_UTF8_WORDS : pick % N_WORDS)));
    }
    return ts;
}

/* A directive "[name:N]" in the prompt: its number, `flag` if it has none, -1 if absent. */
static int directive(const char *prompt, const char *name, int flag) {
    if (!prompt) return -1;
    char key[32];
    snprintf(key, sizeof key, "[%s", name);
    const char *at = strstr(prompt, key);
    if (!at) return -1;
    at += strlen(key);
    if (*at == ':') return atoi(at + 1);
    return *at == ']' ? flag : -1;
}

/* ---------------------------------------------------------------- runs */

typedef struct {
    Twin *twin;
    void *userdata;
    RKLLMInferMode mode;
    bool keep_history;
    int prefill;
    int limit;
    bool ignore_eos;
    char *echo;
    Tokens tokens;
    int eos_after, crash_after, abort_after, error_after, hang_after, delay_us;
    char *save_cache; /* path of a prompt cache to write, or NULL */
} Job;

static RKLLMPerfStat perf_of(const Job *job, int generated) {
    RKLLMPerfStat perf = {
        .prefill_time_ms = 1.25f * (float)job->prefill,
        .prefill_tokens = job->prefill,
        .generate_time_ms = 0.5f * (float)generated,
        .generate_tokens = generated,
        .memory_usage_mb = 42.5f,
    };
    return perf;
}

static int deliver(Job *job, RKLLMResult *r, int generated, LLMCallState state) {
    r->perf = perf_of(job, generated);
    return job->twin->callback(r, job->userdata, state);
}

/* GET_LAST_HIDDEN_LAYER and GET_LOGITS: one NORMAL callback with the arrays. Returns the callback's value. */
static int deliver_outputs(Job *job) {
    Twin *t = job->twin;
    RKLLMResult r = {.text = job->echo, .token_id = -1};
    float *data = NULL;
    if (job->mode == RKLLM_INFER_GET_LAST_HIDDEN_LAYER) {
        int rows = job->prefill < 4 ? job->prefill : 4;
        data = malloc(sizeof(float) * (size_t)(rows * t->embd_size));
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < t->embd_size; j++) data[i * t->embd_size + j] = (float)i + 0.125f * (float)j;
        r.last_hidden_layer = (RKLLMResultLastHiddenLayer){data, t->embd_size, rows};
    } else {
        data = malloc(sizeof(float) * (size_t)t->vocab_size);
        for (int j = 0; j < t->vocab_size; j++) data[j] = 0.5f * (float)j - 1.0f;
        r.logits = (RKLLMResultLogits){data, t->vocab_size, 1};
    }
    int ret = deliver(job, &r, 0, RKLLM_RUN_NORMAL);
    free(data);
    return ret;
}

static void crash_now(void) {
    log_error("simulated fault: writing through a NULL pointer");
    *(volatile int *)NULL = 1;
}

/* Returns true if the run continues; false once it stopped (paused, errored, crashed). */
static bool step(Job *job, int generated, LLMCallState *end) {
    if (job->crash_after == generated) crash_now();
    if (job->abort_after == generated) {
        log_error("simulated fault: abort()");
        abort();
    }
    if (job->error_after == generated) {
        *end = RKLLM_RUN_ERROR;
        return false;
    }
    return true;
}

/* After the callback of token N, for "[hang:N]": the task never ends, whatever rkllm_abort says. */
static void maybe_hang(const Job *job, int generated) {
    if (job->hang_after != generated) return;
    log_error("simulated hang: no more callbacks, and rkllm_abort is ignored");
    for (;;) sleep(1);
}

static void finish_job(Job *job, int generated, LLMCallState end, bool paused) {
    Twin *t = job->twin;
    if (!paused) {
        RKLLMResult r = {.token_id = end == RKLLM_RUN_FINISH ? TWIN_EOS_ID : -1};
        if (end == RKLLM_RUN_ERROR) log_error("simulated runtime error after %d tokens", generated);
        deliver(job, &r, generated, end);
    }
    if (job->save_cache) {
        FILE *f = fopen(job->save_cache, "w");
        if (f) {
            fprintf(f, "RKLLM-TWIN-CACHE %d\n", job->prefill);
            fclose(f);
        }
    }
    pthread_mutex_lock(&t->lock);
    t->kv_cache[0] = (job->keep_history ? t->kv_cache[0] : 0) + job->prefill + generated;
    t->running = false;
    pthread_mutex_unlock(&t->lock);
}

static void *generate(void *arg) {
    Job *job = arg;
    Twin *t = job->twin;
    int generated = 0;
    LLMCallState end = RKLLM_RUN_FINISH;
    bool paused = false;
    if (job->mode != RKLLM_INFER_GENERATE) {
        paused = deliver_outputs(job) == 1;
    } else if (job->echo) {
        RKLLMResult r = {.text = job->echo, .token_id = 3};
        if (step(job, generated, &end)) paused = deliver(job, &r, ++generated, RKLLM_RUN_NORMAL) == 1;
    } else {
        for (size_t i = 0; i < job->tokens.len && generated < job->limit; i++) {
            if (t->abort_requested) break;
            if (job->eos_after == generated && !job->ignore_eos) break;
            if (!step(job, generated, &end)) break;
            if (job->delay_us > 0) usleep((useconds_t)job->delay_us);
            Token *tok = &job->tokens.items[i];
            RKLLMResult r = {.text = tok->text, .token_id = tok->id};
            int ret = deliver(job, &r, ++generated, tok->state);
            maybe_hang(job, generated);
            /* 0 continues; 1 pauses; 1.3's 2 releases the output buffers and continues. */
            if (ret != 0 && !(RKLLM_TWIN_API >= 13 && ret == 2)) {
                paused = true;
                break;
            }
        }
    }
    finish_job(job, generated, end, paused);
    free(job->tokens.items);
    free(job->echo);
    free(job->save_cache);
    free(job);
    return NULL;
}

/* The tokens a prompt costs: its bytes, plus the template around it. */
static int prompt_tokens(const Twin *t, const char *role, const char *prompt, bool first_turn) {
    int n = (int)strlen(prompt);
    if (first_turn) n += (int)strlen(t->tools_system_prompt ? t->tools_system_prompt : t->system_prompt ? t->system_prompt : "");
    if (role && strcmp(role, "tool") == 0 && t->tool_response_str) return n + 2 * (int)strlen(t->tool_response_str) + 5;
    return n + (int)strlen(t->prompt_prefix ? t->prompt_prefix : "") + (int)strlen(t->prompt_postfix ? t->prompt_postfix : "");
}

static bool has_lora(const Twin *t, const char *name) {
    for (int i = 0; i < t->n_loras; i++)
        if (name && strcmp(t->loras[i].name, name) == 0) return true;
    return false;
}

/* Checks a run and works out what it produces. Returns NULL (after logging why) on bad input. */
static Job *plan(Twin *t, RKLLMInput *in, RKLLMInferParam *infer, void *userdata) {
    if (!in || !infer) return log_error("rkllm_input and rkllm_infer_params must not be NULL"), NULL;
    if ((unsigned)infer->mode > RKLLM_INFER_GET_LOGITS) return log_error("invalid infer mode %d", (int)infer->mode), NULL;
    if (infer->lora_params && !has_lora(t, infer->lora_params->lora_adapter_name))
        return log_error("lora adapter %s is not loaded", infer->lora_params->lora_adapter_name ? infer->lora_params->lora_adapter_name : "(null)"), NULL;
    if (infer->prompt_cache_params && infer->prompt_cache_params->save_prompt_cache && !infer->prompt_cache_params->prompt_cache_path)
        return log_error("save_prompt_cache needs a prompt_cache_path"), NULL;
    const char *prompt = NULL;
    uint64_t seed = 14695981039346656037ULL;
    int prefill;
    bool first_turn = !infer->keep_history || t->kv_cache[0] == 0;
    switch (in->input_type) {
    case RKLLM_INPUT_PROMPT:
        if (!in->prompt_input) return log_error("prompt_input must not be NULL"), NULL;
        prompt = in->prompt_input;
        prefill = prompt_tokens(t, in->role, prompt, first_turn);
        seed = fnv1a(seed, prompt, strlen(prompt));
        break;
    case RKLLM_INPUT_TOKEN:
        if (!in->token_input.input_ids || in->token_input.n_tokens == 0) return log_error("token input is empty"), NULL;
        for (size_t i = 0; i < in->token_input.n_tokens; i++)
            if (in->token_input.input_ids[i] < 0 || in->token_input.input_ids[i] >= t->vocab_size)
                return log_error("token id %d is outside the vocabulary (%d)", in->token_input.input_ids[i], t->vocab_size), NULL;
        prefill = (int)in->token_input.n_tokens;
        seed = fnv1a(seed, in->token_input.input_ids, in->token_input.n_tokens * sizeof(int32_t));
        break;
    case RKLLM_INPUT_EMBED:
        if (!in->embed_input.embed || in->embed_input.n_tokens == 0) return log_error("embed input is empty"), NULL;
        prefill = (int)in->embed_input.n_tokens;
        seed = fnv1a(seed, in->embed_input.embed, in->embed_input.n_tokens * (size_t)t->embd_size * sizeof(float));
        break;
    case RKLLM_INPUT_MULTIMODAL: {
        const RKLLMMultiModalInput *m = &in->multimodal_input;
        if (!m->prompt) return log_error("multimodal prompt must not be NULL"), NULL;
        prompt = m->prompt;
#if RKLLM_TWIN_API == 12
        size_t images = m->n_image * m->n_image_tokens;
#else
        size_t images = m->image.n_image * m->image.n_image_tokens + m->video.n_video * m->video.n_frame_per_video * m->video.n_frame_tokens;
#endif
        prefill = prompt_tokens(t, in->role, prompt, first_turn) + (int)images;
        seed = fnv1a(seed, prompt, strlen(prompt));
        break;
    }
    default:
        return log_error("invalid input type %d", (int)in->input_type), NULL;
    }
    int held = infer->keep_history ? t->kv_cache[0] : 0;
    int room = t->param.max_context_len - held - prefill;
    if (room <= 0) return log_error("input of %d tokens exceeds max_context_len %d", held + prefill, t->param.max_context_len), NULL;

    Job *job = calloc(1, sizeof *job);
    job->twin = t;
    job->userdata = userdata ? userdata : t->callback_userdata;
    job->mode = infer->mode;
    job->keep_history = infer->keep_history != 0;
    job->prefill = prefill;
    int max_new = t->param.max_new_tokens;
#if RKLLM_TWIN_API >= 13
    if (infer->max_new_tokens > 0) max_new = infer->max_new_tokens;
    job->ignore_eos = t->param.ignore_eos_token;
#endif
    job->limit = max_new > 0 && max_new < room ? max_new : room;
    job->eos_after = directive(prompt, "eos", 0);
    job->crash_after = directive(prompt, "crash", 0);
    job->abort_after = directive(prompt, "abort", 0);
    job->error_after = directive(prompt, "error", 0);
    job->hang_after = directive(prompt, "hang", 0);
    int slow = directive(prompt, "slow", 1000);
    job->delay_us = slow >= 0 ? slow : t->token_delay_us;
    if (t->echo) job->echo = echo_all(t, in, infer, userdata);
    else if (job->mode == RKLLM_INFER_GENERATE) job->tokens = story(seed, directive(prompt, "utf8", 1) > 0, (size_t)job->limit);
    if (infer->prompt_cache_params && infer->prompt_cache_params->save_prompt_cache)
        job->save_cache = strdup(infer->prompt_cache_params->prompt_cache_path);
    return job;
}

static int start(Twin *t, RKLLMInput *in, RKLLMInferParam *infer, void *userdata, bool wait) {
    if (!t) return log_error("invalid handle"), -1;
    pthread_mutex_lock(&t->lock);
    if (t->running) {
        pthread_mutex_unlock(&t->lock);
        log_error("a task is already running");
        return -1;
    }
    if (t->joinable) pthread_join(t->thread, NULL);
    t->joinable = false;
    Job *job = plan(t, in, infer, userdata);
    if (!job) {
        pthread_mutex_unlock(&t->lock);
        return -1;
    }
    t->running = true;
    t->abort_requested = false;
    pthread_create(&t->thread, NULL, generate, job);
    t->joinable = true;
    pthread_mutex_unlock(&t->lock);
    if (wait) {
        pthread_join(t->thread, NULL);
        t->joinable = false;
    }
    return 0;
}

/* ---------------------------------------------------------------- the exported API */

TWIN_EXPORT RKLLMParam rkllm_createDefaultParam(void) {
    RKLLMParam p;
    memset(&p, 0, sizeof p);
    p.max_context_len = 512;
    p.max_new_tokens = -1;
    p.top_k = 40;
    p.n_keep = -1;
    p.top_p = 0.9f;
    p.temperature = 0.8f;
    p.repeat_penalty = 1.1f;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.mirostat = 0;
    p.mirostat_tau = 5.0f;
    p.mirostat_eta = 0.1f;
    p.skip_special_token = true;
    p.is_async = false;
    p.extend_param.base_domain_id = 0;
    p.extend_param.enabled_cpus_num = 4;
    p.extend_param.enabled_cpus_mask = 0xF0;
    p.extend_param.n_batch = 1;
#ifdef RKLLM_TWIN_DIRTY_DEFAULTS
    p.extend_param.reserved[0] = 0xA5; /* defaults that do not tell the layout */
#endif
    return p;
}

#if RKLLM_TWIN_API == 12
TWIN_EXPORT int rkllm_init(LLMHandle *handle, RKLLMParam *param, LLMResultCallback callback) {
    LLMResultCallback result_callback = callback;
    void *result_userdata = NULL;
    char echo[64];
    snprintf(echo, sizeof echo, "{\"kind\":\"function\"}");
#else
TWIN_EXPORT int rkllm_init(LLMHandle *handle, RKLLMParam *param, RKLLMCallback *callback) {
    LLMResultCallback result_callback = callback ? callback->result_callback : NULL;
    void *result_userdata = callback ? callback->result_userdata : NULL;
    char echo[256];
    if (callback)
        snprintf(echo, sizeof echo,
                 "{\"kind\":\"struct\",\"result_userdata\":%llu,\"tokenizer_callback\":%s,\"tokenizer_userdata\":%llu,"
                 "\"embed_callback\":%s,\"embed_userdata\":%llu}",
                 (unsigned long long)(uintptr_t)callback->result_userdata, callback->tokenizer_callback ? "true" : "false",
                 (unsigned long long)(uintptr_t)callback->tokenizer_userdata, callback->embed_callback ? "true" : "false",
                 (unsigned long long)(uintptr_t)callback->embed_userdata);
#endif
    printf("I rkllm: rkllm-runtime version: %s (rkllm-mcp ABI twin), platform: twin\n", TWIN_VERSION);
    fflush(stdout);
    if (!handle || !param || !result_callback) return log_error("handle, param and callback must not be NULL"), -1;
    /* A slow load, for tests: loading waits until the file RKLLM_TWIN_INIT_GATE names exists. */
    const char *gate = getenv("RKLLM_TWIN_INIT_GATE");
    while (gate && *gate && !file_exists(gate)) usleep(10000);
    if (!param->model_path || !file_exists(param->model_path))
        return log_error("model file %s does not exist", param->model_path ? param->model_path : "(null)"), -1;
    if (param->max_context_len <= 0) return log_error("max_context_len must be positive"), -1;
    if (param->extend_param.n_batch > TWIN_MAX_BATCH) return log_error("n_batch %d is above %d", param->extend_param.n_batch, TWIN_MAX_BATCH), -1;
    Twin *t = calloc(1, sizeof *t);
    if (read_model(t, param->model_path) != 0) {
        free(t);
        return -1;
    }
    t->param = *param;
    t->model_path = strdup(param->model_path);
    t->param.model_path = t->model_path;
#if RKLLM_TWIN_API == 12
    t->param.img_start = t->img_start = dup_or_null(param->img_start);
    t->param.img_end = t->img_end = dup_or_null(param->img_end);
    t->param.img_content = t->img_content = dup_or_null(param->img_content);
#endif
    t->callback = result_callback;
    t->callback_userdata = result_userdata;
    t->callback_echo = strdup(echo);
    pthread_mutex_init(&t->lock, NULL);
    *handle = t;
    printf("I rkllm: loaded %s, max_context_len %d\n", param->model_path, param->max_context_len);
    fflush(stdout);
    return 0;
}

TWIN_EXPORT int rkllm_load_lora(LLMHandle handle, RKLLMLoraAdapter *adapter) {
    Twin *t = handle;
    if (!t || !adapter || !adapter->lora_adapter_name) return log_error("invalid lora adapter"), -1;
    if (!file_exists(adapter->lora_adapter_path)) return log_error("lora file %s does not exist", adapter->lora_adapter_path), -1;
    if (has_lora(t, adapter->lora_adapter_name)) return log_error("lora %s is already loaded", adapter->lora_adapter_name), -1;
    if (t->n_loras == TWIN_MAX_LORAS) return log_error("too many lora adapters"), -1;
    t->loras[t->n_loras++] = (Lora){strdup(adapter->lora_adapter_path), strdup(adapter->lora_adapter_name), adapter->scale};
    return 0;
}

TWIN_EXPORT int rkllm_load_prompt_cache(LLMHandle handle, const char *path) {
    Twin *t = handle;
    char head[32] = {0};
    FILE *f = t && path ? fopen(path, "r") : NULL;
    if (!f) return log_error("cannot open prompt cache %s", path ? path : "(null)"), -1;
    size_t n = fread(head, 1, sizeof head - 1, f);
    fclose(f);
    if (n < 16 || strncmp(head, "RKLLM-TWIN-CACHE", 16) != 0) return log_error("%s is not a prompt cache", path), -1;
    free(t->prompt_cache);
    t->prompt_cache = strdup(path);
    return 0;
}

TWIN_EXPORT int rkllm_release_prompt_cache(LLMHandle handle) {
    Twin *t = handle;
    if (!t) return -1;
    free(t->prompt_cache);
    t->prompt_cache = NULL;
    return 0;
}

static bool is_running(Twin *t) {
    pthread_mutex_lock(&t->lock);
    bool running = t->running;
    pthread_mutex_unlock(&t->lock);
    return running;
}

/* Waits (up to 3 s) for the task to stop, as a runtime may: a caller that blocks the thread the
 * callbacks need would stall here. */
TWIN_EXPORT int rkllm_abort(LLMHandle handle) {
    Twin *t = handle;
    if (!t) return -1;
    t->abort_requested = true;
    for (int waited_ms = 0; waited_ms < 3000; waited_ms++) {
        if (!is_running(t)) return 0;
        usleep(1000);
    }
    log_error("abort: the task did not stop within 3 s");
    return -1;
}

TWIN_EXPORT int rkllm_destroy(LLMHandle handle) {
    Twin *t = handle;
    if (!t) return -1;
    t->abort_requested = true;
    if (t->joinable) pthread_join(t->thread, NULL);
    free(t->model_path);
#if RKLLM_TWIN_API == 12
    free(t->img_start), free(t->img_end), free(t->img_content);
#endif
    free(t->callback_echo);
    free(t->system_prompt), free(t->prompt_prefix), free(t->prompt_postfix);
    free(t->tools_system_prompt), free(t->tools), free(t->tool_response_str);
    for (int i = 0; i < t->n_loras; i++) free(t->loras[i].path), free(t->loras[i].name);
    free(t->prompt_cache);
    free(t->cross_attn.k), free(t->cross_attn.v), free(t->cross_attn.mask), free(t->cross_attn.pos);
    free(t->last_clear);
    pthread_mutex_destroy(&t->lock);
    free(t);
    return 0;
}

TWIN_EXPORT int rkllm_run(LLMHandle handle, RKLLMInput *input, RKLLMInferParam *infer, void *userdata) {
    return start(handle, input, infer, userdata, true);
}

TWIN_EXPORT int rkllm_run_async(LLMHandle handle, RKLLMInput *input, RKLLMInferParam *infer, void *userdata) {
    return start(handle, input, infer, userdata, false);
}

TWIN_EXPORT int rkllm_is_running(LLMHandle handle) {
    Twin *t = handle;
    if (!t) return -1;
    bool running = is_running(t);
#if RKLLM_TWIN_API == 12
    return running ? 0 : -1; /* 1.2.x: 0 while a task runs, non-zero otherwise */
#else
    return running ? 1 : 0; /* 1.3.x: 1 while a task runs, 0 otherwise */
#endif
}

TWIN_EXPORT int rkllm_clear_kv_cache(LLMHandle handle, int keep_system_prompt, int *start_pos, int *end_pos) {
    Twin *t = handle;
    if (!t) return -1;
    if ((start_pos == NULL) != (end_pos == NULL)) return log_error("start_pos and end_pos must both be set or both be NULL"), -1;
    Str s = {0};
    str_put(&s, "{", 1);
    json_key(&s, "keep_system_prompt"), str_printf(&s, "%d", keep_system_prompt);
    json_key(&s, "start_pos"), json_ints(&s, start_pos, start_pos ? (size_t)n_batch(t) : 0);
    json_key(&s, "end_pos"), json_ints(&s, end_pos, end_pos ? (size_t)n_batch(t) : 0);
    str_put(&s, "}", 1);
    free(t->last_clear);
    t->last_clear = s.buf;
    const char *system = t->tools_system_prompt ? t->tools_system_prompt : t->system_prompt;
    for (int i = 0; i < n_batch(t); i++) {
        if (!start_pos) {
            t->kv_cache[i] = keep_system_prompt && system && t->kv_cache[i] > 0 ? (int)strlen(system) : 0;
            continue;
        }
        if (start_pos[i] < 0 || end_pos[i] < 0) return log_error("negative kv cache position"), -1;
        int end = end_pos[i] < t->kv_cache[i] ? end_pos[i] : t->kv_cache[i];
        if (start_pos[i] < end) t->kv_cache[i] -= end - start_pos[i];
    }
    return 0;
}

TWIN_EXPORT int rkllm_get_kv_cache_size(LLMHandle handle, int *cache_sizes) {
    Twin *t = handle;
    if (!t || !cache_sizes) return -1;
    for (int i = 0; i < n_batch(t); i++) cache_sizes[i] = t->kv_cache[i];
    return 0;
}

static void replace(char **slot, const char *value) {
    free(*slot);
    *slot = dup_or_null(value);
}

TWIN_EXPORT int rkllm_set_chat_template(LLMHandle handle, const char *system_prompt, const char *prompt_prefix, const char *prompt_postfix) {
    Twin *t = handle;
    if (!t || !system_prompt || !prompt_prefix || !prompt_postfix) return log_error("chat template strings must not be NULL"), -1;
    /* "[refuse-second]" with RKLLM_TWIN_REFUSE_SECOND=FILE: the first process takes it (creates FILE), the next refuses (removes it). */
    const char *mark = getenv("RKLLM_TWIN_REFUSE_SECOND");
    if (mark && *mark && strstr(system_prompt, "[refuse-second]")) {
        if (file_exists(mark)) return unlink(mark), log_error("simulated refusal of the chat template"), -1;
        FILE *f = fopen(mark, "w");
        if (f) fclose(f);
    }
    replace(&t->system_prompt, system_prompt);
    replace(&t->prompt_prefix, prompt_prefix);
    replace(&t->prompt_postfix, prompt_postfix);
    return 0;
}

#ifndef RKLLM_TWIN_OMIT_FUNCTION_TOOLS
TWIN_EXPORT int rkllm_set_function_tools(LLMHandle handle, const char *system_prompt, const char *tools, const char *tool_response_str) {
    Twin *t = handle;
    if (!t || !system_prompt || !tools || !tool_response_str) return log_error("function tool strings must not be NULL"), -1;
    if (tools[0] != '[' && tools[0] != '\0') return log_error("tools must be a JSON array"), -1;
    replace(&t->tools_system_prompt, system_prompt);
    replace(&t->tools, tools);
    replace(&t->tool_response_str, tool_response_str);
    return 0;
}
#endif

static void *copy_of(const void *data, size_t bytes) {
    void *copy = malloc(bytes ? bytes : 1);
    if (bytes) memcpy(copy, data, bytes);
    return copy;
}

TWIN_EXPORT int rkllm_set_cross_attn_params(LLMHandle handle, RKLLMCrossAttnParam *p) {
    Twin *t = handle;
    if (!t || !p) return -1;
    if (!t->param.extend_param.use_cross_attn) return log_error("cross attention is not enabled (extend_param.use_cross_attn)"), -1;
    if (p->num_tokens <= 0 || !p->encoder_k_cache || !p->encoder_v_cache || !p->encoder_mask || !p->encoder_pos)
        return log_error("invalid cross attention parameters"), -1;
    CrossAttn *c = &t->cross_attn;
    free(c->k), free(c->v), free(c->mask), free(c->pos);
    size_t cache = (size_t)p->num_tokens * (size_t)t->embd_size * sizeof(float);
    c->k = copy_of(p->encoder_k_cache, cache);
    c->v = copy_of(p->encoder_v_cache, cache);
    c->mask = copy_of(p->encoder_mask, (size_t)p->num_tokens * sizeof(float));
    c->pos = copy_of(p->encoder_pos, (size_t)p->num_tokens * sizeof(int32_t));
    c->num_tokens = p->num_tokens;
    t->has_cross_attn = true;
    return 0;
}

/* ---------------------------------------------------------------- for tests: the compiler's layout */

TWIN_EXPORT const char *rkllm_twin_layout(void) {
    static char out[8192];
    Str s = {0};
    str_printf(&s, "{\"api\":\"%s\"", TWIN_VERSION);
#define STRUCT(type) str_printf(&s, ",\"" #type "\":{\"size\":%zu", sizeof(type))
#define MEMBER(type, field) str_printf(&s, ",\"" #field "\":%zu", offsetof(type, field))
#define END() str_put(&s, "}", 1)
    STRUCT(RKLLMExtendParam), MEMBER(RKLLMExtendParam, base_domain_id), MEMBER(RKLLMExtendParam, embed_flash),
        MEMBER(RKLLMExtendParam, enabled_cpus_num), MEMBER(RKLLMExtendParam, enabled_cpus_mask), MEMBER(RKLLMExtendParam, n_batch),
        MEMBER(RKLLMExtendParam, use_cross_attn), MEMBER(RKLLMExtendParam, reserved), END();
    STRUCT(RKLLMParam), MEMBER(RKLLMParam, model_path), MEMBER(RKLLMParam, max_context_len), MEMBER(RKLLMParam, max_new_tokens),
        MEMBER(RKLLMParam, top_k), MEMBER(RKLLMParam, n_keep), MEMBER(RKLLMParam, top_p), MEMBER(RKLLMParam, temperature),
        MEMBER(RKLLMParam, repeat_penalty), MEMBER(RKLLMParam, frequency_penalty), MEMBER(RKLLMParam, presence_penalty),
        MEMBER(RKLLMParam, mirostat), MEMBER(RKLLMParam, mirostat_tau), MEMBER(RKLLMParam, mirostat_eta),
        MEMBER(RKLLMParam, skip_special_token), MEMBER(RKLLMParam, is_async), MEMBER(RKLLMParam, extend_param);
#if RKLLM_TWIN_API == 12
    MEMBER(RKLLMParam, img_start), MEMBER(RKLLMParam, img_end), MEMBER(RKLLMParam, img_content);
#else
    MEMBER(RKLLMParam, ignore_eos_token);
#endif
    END();
    STRUCT(RKLLMLoraAdapter), MEMBER(RKLLMLoraAdapter, lora_adapter_path), MEMBER(RKLLMLoraAdapter, lora_adapter_name),
        MEMBER(RKLLMLoraAdapter, scale), END();
    STRUCT(RKLLMEmbedInput), MEMBER(RKLLMEmbedInput, embed), MEMBER(RKLLMEmbedInput, n_tokens), END();
    STRUCT(RKLLMTokenInput), MEMBER(RKLLMTokenInput, input_ids), MEMBER(RKLLMTokenInput, n_tokens), END();
    STRUCT(RKLLMMultiModalInput), MEMBER(RKLLMMultiModalInput, prompt);
#if RKLLM_TWIN_API == 12
    MEMBER(RKLLMMultiModalInput, image_embed), MEMBER(RKLLMMultiModalInput, n_image_tokens), MEMBER(RKLLMMultiModalInput, n_image),
        MEMBER(RKLLMMultiModalInput, image_width), MEMBER(RKLLMMultiModalInput, image_height), END();
#else
    MEMBER(RKLLMMultiModalInput, image), MEMBER(RKLLMMultiModalInput, video), END();
    STRUCT(RKLLMImageInput), MEMBER(RKLLMImageInput, image_embed), MEMBER(RKLLMImageInput, n_image_tokens),
        MEMBER(RKLLMImageInput, n_image), MEMBER(RKLLMImageInput, image_start), MEMBER(RKLLMImageInput, image_end),
        MEMBER(RKLLMImageInput, image_content), MEMBER(RKLLMImageInput, image_width), MEMBER(RKLLMImageInput, image_height), END();
    STRUCT(RKLLMVideoInput), MEMBER(RKLLMVideoInput, video_embed), MEMBER(RKLLMVideoInput, n_frame_tokens),
        MEMBER(RKLLMVideoInput, n_frame_per_video), MEMBER(RKLLMVideoInput, n_video), MEMBER(RKLLMVideoInput, video_start),
        MEMBER(RKLLMVideoInput, video_end), MEMBER(RKLLMVideoInput, video_content), MEMBER(RKLLMVideoInput, frame_width),
        MEMBER(RKLLMVideoInput, frame_height), END();
    STRUCT(RKLLMSamplingParam), MEMBER(RKLLMSamplingParam, top_k), MEMBER(RKLLMSamplingParam, top_p),
        MEMBER(RKLLMSamplingParam, temperature), MEMBER(RKLLMSamplingParam, repeat_penalty), MEMBER(RKLLMSamplingParam, frequency_penalty),
        MEMBER(RKLLMSamplingParam, presence_penalty), MEMBER(RKLLMSamplingParam, mirostat), MEMBER(RKLLMSamplingParam, mirostat_tau),
        MEMBER(RKLLMSamplingParam, mirostat_eta), END();
    STRUCT(RKLLMCallback), MEMBER(RKLLMCallback, result_callback), MEMBER(RKLLMCallback, result_userdata),
        MEMBER(RKLLMCallback, tokenizer_callback), MEMBER(RKLLMCallback, tokenizer_userdata), MEMBER(RKLLMCallback, embed_callback),
        MEMBER(RKLLMCallback, embed_userdata), END();
#endif
    STRUCT(RKLLMInput), MEMBER(RKLLMInput, role), MEMBER(RKLLMInput, enable_thinking), MEMBER(RKLLMInput, input_type),
        MEMBER(RKLLMInput, prompt_input), END();
    STRUCT(RKLLMLoraParam), MEMBER(RKLLMLoraParam, lora_adapter_name), END();
    STRUCT(RKLLMPromptCacheParam), MEMBER(RKLLMPromptCacheParam, save_prompt_cache), MEMBER(RKLLMPromptCacheParam, prompt_cache_path), END();
    STRUCT(RKLLMCrossAttnParam), MEMBER(RKLLMCrossAttnParam, encoder_k_cache), MEMBER(RKLLMCrossAttnParam, encoder_v_cache),
        MEMBER(RKLLMCrossAttnParam, encoder_mask), MEMBER(RKLLMCrossAttnParam, encoder_pos), MEMBER(RKLLMCrossAttnParam, num_tokens), END();
    STRUCT(RKLLMInferParam), MEMBER(RKLLMInferParam, mode), MEMBER(RKLLMInferParam, lora_params), MEMBER(RKLLMInferParam, prompt_cache_params),
        MEMBER(RKLLMInferParam, keep_history);
#if RKLLM_TWIN_API >= 13
    MEMBER(RKLLMInferParam, sampling_params), MEMBER(RKLLMInferParam, max_new_tokens);
#endif
    END();
    STRUCT(RKLLMResultLastHiddenLayer), MEMBER(RKLLMResultLastHiddenLayer, hidden_states), MEMBER(RKLLMResultLastHiddenLayer, embd_size),
        MEMBER(RKLLMResultLastHiddenLayer, num_tokens), END();
    STRUCT(RKLLMResultLogits), MEMBER(RKLLMResultLogits, logits), MEMBER(RKLLMResultLogits, vocab_size), MEMBER(RKLLMResultLogits, num_tokens), END();
    STRUCT(RKLLMPerfStat), MEMBER(RKLLMPerfStat, prefill_time_ms), MEMBER(RKLLMPerfStat, prefill_tokens), MEMBER(RKLLMPerfStat, generate_time_ms),
        MEMBER(RKLLMPerfStat, generate_tokens), MEMBER(RKLLMPerfStat, memory_usage_mb), END();
    STRUCT(RKLLMResult), MEMBER(RKLLMResult, text), MEMBER(RKLLMResult, token_id), MEMBER(RKLLMResult, last_hidden_layer),
        MEMBER(RKLLMResult, logits), MEMBER(RKLLMResult, perf), END();
    str_put(&s, "}", 1);
    snprintf(out, sizeof out, "%s", s.buf);
    free(s.buf);
    return out;
}
