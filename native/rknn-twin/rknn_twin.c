/*
 * rknn_twin: an ABI twin of Rockchip's RKNN runtime (librknnrt.so, rknn_api.h), for tests on
 * machines without an NPU. It exports the functions a vision encoder uses, with the header's
 * declarations (written here from docs/rknn-abi.md, LP64):
 *
 *   gcc -shared -fPIC -O2 -Wall -Wextra -Werror -o librknn_twin.so rknn_twin.c
 *
 * Its "model" is a text file (see docs/vision.md, "The twin's model file"):
 *
 *   RKNN-TWIN
 *   fmt=NHWC          input format: NHWC or NCHW
 *   type=UINT8        input type the model declares: UINT8, INT8, FLOAT16 or FLOAT32
 *   height=4
 *   width=6
 *   channels=3
 *   tokens=4          output tokens
 *   embed=5           output width (embedding size)
 *   out_dims=2        2: dims [tokens, embed]; 3: dims [1, tokens, embed]
 *
 * What it computes, so tests can prove the pixels arrived in the right order and layout: the
 * input bytes, in the order received, are cut into `tokens` blocks of B = size / tokens bytes;
 * for token t and column j,
 *
 *   embed[t][j] = (sum over k < B of (k + 1) * byte[t * B + k]) mod 65521 + j / 8
 *
 * which float32 holds exactly. It refuses (RKNN_ERR_INPUT_INVALID, with an "E RKNN:" line on
 * stderr) an input whose size, type (not UINT8), format (not the model's) or pass_through (not 0)
 * differs from what a binding must send. An input whose first four bytes are DE AD BE EF makes
 * rknn_run crash (SIGSEGV); "HANG" makes it never return; a model file with the line
 * "crash_on_init=1" makes rknn_init crash. rknn_set_core_mask logs the mask on stdout and refuses values that
 * are not an rknn_core_mask.
 */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TWIN_EXPORT __attribute__((visibility("default")))

/* ---------------------------------------------------------------- the header's types */

#define RKNN_SUCC 0
#define RKNN_ERR_FAIL -1
#define RKNN_ERR_PARAM_INVALID -5
#define RKNN_ERR_MODEL_INVALID -6
#define RKNN_ERR_CTX_INVALID -7
#define RKNN_ERR_INPUT_INVALID -8
#define RKNN_ERR_OUTPUT_INVALID -9
#define RKNN_MAX_DIMS 16
#define RKNN_MAX_NAME_LEN 256

typedef uint64_t rknn_context;

typedef enum { RKNN_QUERY_IN_OUT_NUM = 0, RKNN_QUERY_INPUT_ATTR = 1, RKNN_QUERY_OUTPUT_ATTR = 2 } rknn_query_cmd;
typedef enum { RKNN_TENSOR_FLOAT32 = 0, RKNN_TENSOR_FLOAT16 = 1, RKNN_TENSOR_INT8 = 2, RKNN_TENSOR_UINT8 = 3 } rknn_tensor_type;
typedef enum { RKNN_TENSOR_NCHW = 0, RKNN_TENSOR_NHWC = 1 } rknn_tensor_format;
typedef enum { RKNN_TENSOR_QNT_NONE = 0, RKNN_TENSOR_QNT_AFFINE_ASYMMETRIC = 2 } rknn_tensor_qnt_type;
typedef enum { RKNN_NPU_CORE_AUTO = 0, RKNN_NPU_CORE_ALL = 0xffff } rknn_core_mask;

typedef struct {
    uint32_t n_input;
    uint32_t n_output;
} rknn_input_output_num;

typedef struct {
    uint32_t index;
    uint32_t n_dims;
    uint32_t dims[RKNN_MAX_DIMS];
    char name[RKNN_MAX_NAME_LEN];
    uint32_t n_elems;
    uint32_t size;
    rknn_tensor_format fmt;
    rknn_tensor_type type;
    rknn_tensor_qnt_type qnt_type;
    int8_t fl;
    int32_t zp;
    float scale;
    uint32_t w_stride;
    uint32_t size_with_stride;
    uint8_t pass_through;
    uint32_t h_stride;
} rknn_tensor_attr;

typedef struct {
    uint32_t index;
    void *buf;
    uint32_t size;
    uint8_t pass_through;
    rknn_tensor_type type;
    rknn_tensor_format fmt;
} rknn_input;

typedef struct {
    uint8_t want_float;
    uint8_t is_prealloc;
    uint32_t index;
    void *buf;
    uint32_t size;
} rknn_output;

/* ---------------------------------------------------------------- the twin's state */

typedef struct {
    uint32_t magic;
    rknn_tensor_format fmt;
    rknn_tensor_type type;
    uint32_t height, width, channels, tokens, embed, out_dims;
    uint8_t *input; /* the last input set, copied as the runtime does */
    uint32_t input_size;
    int core_mask;
} Twin;

#define TWIN_MAGIC 0x524b4e4eu

static Twin *twin_of(rknn_context context) {
    Twin *twin = (Twin *)(uintptr_t)context;
    return twin != NULL && twin->magic == TWIN_MAGIC ? twin : NULL;
}

static uint32_t input_bytes(const Twin *twin) { return twin->height * twin->width * twin->channels; }

static uint32_t number(const char *text, const char *key, uint32_t fallback) {
    const char *at = strstr(text, key);
    return at ? (uint32_t)strtoul(at + strlen(key), NULL, 10) : fallback;
}

/* ---------------------------------------------------------------- the runtime's functions */

TWIN_EXPORT int rknn_init(rknn_context *context, void *model, uint32_t size, uint32_t flag, void *extend) {
    (void)flag;
    (void)extend;
    if (context == NULL || model == NULL || size == 0) return RKNN_ERR_PARAM_INVALID;
    char *text = calloc(size + 1, 1);
    memcpy(text, model, size);
    if (strncmp(text, "RKNN-TWIN\n", 10) != 0) {
        fprintf(stderr, "E RKNN: Invalid RKNN model version or not an RKNN model (%u bytes)\n", size);
        free(text);
        return RKNN_ERR_MODEL_INVALID;
    }
    if (strstr(text, "crash_on_init=1")) {
        fprintf(stderr, "E RKNN: the twin crashes in rknn_init\n");
        fflush(stderr);
        raise(SIGSEGV);
    }
    Twin *twin = calloc(1, sizeof(Twin));
    twin->magic = TWIN_MAGIC;
    twin->fmt = strstr(text, "fmt=NCHW") ? RKNN_TENSOR_NCHW : RKNN_TENSOR_NHWC;
    twin->type = strstr(text, "type=INT8")      ? RKNN_TENSOR_INT8
                 : strstr(text, "type=FLOAT16") ? RKNN_TENSOR_FLOAT16
                 : strstr(text, "type=FLOAT32") ? RKNN_TENSOR_FLOAT32
                                                : RKNN_TENSOR_UINT8;
    twin->height = number(text, "height=", 4);
    twin->width = number(text, "width=", 4);
    twin->channels = number(text, "channels=", 3);
    twin->tokens = number(text, "tokens=", 2);
    twin->embed = number(text, "embed=", 4);
    twin->out_dims = number(text, "out_dims=", 2);
    free(text);
    if (twin->tokens == 0 || input_bytes(twin) % twin->tokens != 0) {
        fprintf(stderr, "E RKNN: the twin's model is inconsistent: %u input bytes in %u tokens\n", input_bytes(twin), twin->tokens);
        free(twin);
        return RKNN_ERR_MODEL_INVALID;
    }
    printf("I RKNN: rknn_twin, model %ux%ux%u -> %u x %u\n", twin->height, twin->width, twin->channels, twin->tokens, twin->embed);
    fflush(stdout);
    *context = (rknn_context)(uintptr_t)twin;
    return RKNN_SUCC;
}

TWIN_EXPORT int rknn_destroy(rknn_context context) {
    Twin *twin = twin_of(context);
    if (twin == NULL) return RKNN_ERR_CTX_INVALID;
    twin->magic = 0;
    free(twin->input);
    free(twin);
    return RKNN_SUCC;
}

TWIN_EXPORT int rknn_set_core_mask(rknn_context context, rknn_core_mask core_mask) {
    Twin *twin = twin_of(context);
    if (twin == NULL) return RKNN_ERR_CTX_INVALID;
    int mask = (int)core_mask;
    if (mask != RKNN_NPU_CORE_ALL && (mask < 0 || mask > 7)) {
        fprintf(stderr, "E RKNN: invalid core mask %d\n", mask);
        return RKNN_ERR_PARAM_INVALID;
    }
    twin->core_mask = mask;
    printf("I RKNN: core mask %d\n", mask);
    fflush(stdout);
    return RKNN_SUCC;
}

static void describe_input(const Twin *twin, rknn_tensor_attr *attr) {
    attr->n_dims = 4;
    uint32_t nhwc[4] = {1, twin->height, twin->width, twin->channels};
    uint32_t nchw[4] = {1, twin->channels, twin->height, twin->width};
    memcpy(attr->dims, twin->fmt == RKNN_TENSOR_NHWC ? nhwc : nchw, sizeof(nhwc));
    snprintf(attr->name, RKNN_MAX_NAME_LEN, "pixel_values");
    attr->n_elems = input_bytes(twin);
    attr->fmt = twin->fmt;
    attr->type = twin->type;
    uint32_t width = twin->type == RKNN_TENSOR_FLOAT32 ? 4 : twin->type == RKNN_TENSOR_FLOAT16 ? 2 : 1;
    attr->size = attr->n_elems * width;
    attr->qnt_type = twin->type == RKNN_TENSOR_INT8 ? RKNN_TENSOR_QNT_AFFINE_ASYMMETRIC : RKNN_TENSOR_QNT_NONE;
    attr->zp = twin->type == RKNN_TENSOR_INT8 ? -128 : 0;
    attr->scale = twin->type == RKNN_TENSOR_INT8 ? 1.0f / 255 : 1.0f;
    attr->size_with_stride = attr->size;
}

static void describe_output(const Twin *twin, rknn_tensor_attr *attr) {
    attr->n_dims = twin->out_dims == 3 ? 3 : 2;
    uint32_t three[3] = {1, twin->tokens, twin->embed};
    memcpy(attr->dims, twin->out_dims == 3 ? three : three + 1, attr->n_dims * sizeof(uint32_t));
    snprintf(attr->name, RKNN_MAX_NAME_LEN, "image_embeds");
    attr->n_elems = twin->tokens * twin->embed;
    attr->fmt = RKNN_TENSOR_NCHW;
    attr->type = RKNN_TENSOR_FLOAT16;
    attr->size = attr->n_elems * 2;
    attr->scale = 1.0f;
    attr->size_with_stride = attr->size;
}

TWIN_EXPORT int rknn_query(rknn_context context, rknn_query_cmd cmd, void *info, uint32_t size) {
    Twin *twin = twin_of(context);
    if (twin == NULL) return RKNN_ERR_CTX_INVALID;
    if (info == NULL) return RKNN_ERR_PARAM_INVALID;
    if (cmd == RKNN_QUERY_IN_OUT_NUM) {
        if (size < sizeof(rknn_input_output_num)) return RKNN_ERR_PARAM_INVALID;
        rknn_input_output_num *num = info;
        num->n_input = 1;
        num->n_output = 1;
        return RKNN_SUCC;
    }
    if (cmd != RKNN_QUERY_INPUT_ATTR && cmd != RKNN_QUERY_OUTPUT_ATTR) return RKNN_ERR_PARAM_INVALID;
    if (size != sizeof(rknn_tensor_attr)) {
        fprintf(stderr, "E RKNN: rknn_query: info size %u, expected %zu\n", size, sizeof(rknn_tensor_attr));
        return RKNN_ERR_PARAM_INVALID;
    }
    rknn_tensor_attr *attr = info;
    if (attr->index != 0) return RKNN_ERR_PARAM_INVALID;
    memset(attr, 0, sizeof(*attr));
    if (cmd == RKNN_QUERY_INPUT_ATTR)
        describe_input(twin, attr);
    else
        describe_output(twin, attr);
    return RKNN_SUCC;
}

TWIN_EXPORT int rknn_inputs_set(rknn_context context, uint32_t n_inputs, rknn_input inputs[]) {
    Twin *twin = twin_of(context);
    if (twin == NULL) return RKNN_ERR_CTX_INVALID;
    if (n_inputs != 1 || inputs == NULL || inputs[0].index != 0 || inputs[0].buf == NULL) return RKNN_ERR_PARAM_INVALID;
    const rknn_input *in = &inputs[0];
    if (in->size != input_bytes(twin) || in->type != RKNN_TENSOR_UINT8 || in->fmt != twin->fmt || in->pass_through != 0) {
        fprintf(stderr, "E RKNN: input 0 has size %u type %d fmt %d pass_through %d; the twin takes size %u type 3 (UINT8) fmt %d pass_through 0\n",
                in->size, (int)in->type, (int)in->fmt, (int)in->pass_through, input_bytes(twin), (int)twin->fmt);
        return RKNN_ERR_INPUT_INVALID;
    }
    free(twin->input);
    twin->input = malloc(in->size);
    memcpy(twin->input, in->buf, in->size);
    twin->input_size = in->size;
    return RKNN_SUCC;
}

TWIN_EXPORT int rknn_run(rknn_context context, void *extend) {
    (void)extend;
    Twin *twin = twin_of(context);
    if (twin == NULL) return RKNN_ERR_CTX_INVALID;
    if (twin->input == NULL) {
        fprintf(stderr, "E RKNN: rknn_run before rknn_inputs_set\n");
        return RKNN_ERR_INPUT_INVALID;
    }
    const uint8_t *in = twin->input;
    if (twin->input_size >= 4 && in[0] == 0xDE && in[1] == 0xAD && in[2] == 0xBE && in[3] == 0xEF) {
        fprintf(stderr, "E RKNN: the twin crashes on DE AD BE EF\n");
        fflush(stderr);
        raise(SIGSEGV);
    }
    if (twin->input_size >= 4 && memcmp(in, "HANG", 4) == 0) {
        for (;;) pause();
    }
    return RKNN_SUCC;
}

TWIN_EXPORT int rknn_outputs_get(rknn_context context, uint32_t n_outputs, rknn_output outputs[], void *extend) {
    (void)extend;
    Twin *twin = twin_of(context);
    if (twin == NULL) return RKNN_ERR_CTX_INVALID;
    if (n_outputs != 1 || outputs == NULL || outputs[0].index != 0) return RKNN_ERR_PARAM_INVALID;
    if (!outputs[0].want_float || outputs[0].is_prealloc) {
        fprintf(stderr, "E RKNN: the twin only answers want_float=1, is_prealloc=0\n");
        return RKNN_ERR_OUTPUT_INVALID;
    }
    uint32_t block = twin->input_size / twin->tokens;
    float *out = malloc(sizeof(float) * twin->tokens * twin->embed);
    for (uint32_t t = 0; t < twin->tokens; t++) {
        uint64_t sum = 0;
        for (uint32_t k = 0; k < block; k++) sum += (uint64_t)(k + 1) * twin->input[t * block + k];
        for (uint32_t j = 0; j < twin->embed; j++) out[t * twin->embed + j] = (float)(sum % 65521) + (float)j / 8.0f;
    }
    outputs[0].buf = out;
    outputs[0].size = sizeof(float) * twin->tokens * twin->embed;
    return RKNN_SUCC;
}

TWIN_EXPORT int rknn_outputs_release(rknn_context context, uint32_t n_outputs, rknn_output outputs[]) {
    Twin *twin = twin_of(context);
    if (twin == NULL) return RKNN_ERR_CTX_INVALID;
    if (n_outputs != 1 || outputs == NULL) return RKNN_ERR_PARAM_INVALID;
    free(outputs[0].buf);
    outputs[0].buf = NULL;
    return RKNN_SUCC;
}

/* For tests of the layout: sizes and offsets as this compiler laid them out. */
TWIN_EXPORT void rknn_twin_layout(uint32_t out[8]) {
    out[0] = sizeof(rknn_tensor_attr);
    out[1] = offsetof(rknn_tensor_attr, fmt);
    out[2] = offsetof(rknn_tensor_attr, zp);
    out[3] = offsetof(rknn_tensor_attr, h_stride);
    out[4] = sizeof(rknn_input);
    out[5] = offsetof(rknn_input, fmt);
    out[6] = sizeof(rknn_output);
    out[7] = offsetof(rknn_output, size);
}
