/* Exact retired-instruction counts per guest address.
 *
 * Every translated block gets a counter incremented inline each time the block runs; at exit the
 * plugin writes one line "<insn vaddr hex> <executions>" per instruction of every executed block
 * to the file named by the "out=PATH" argument. deploy/measure.py sums the lines per symbol.
 * Run QEMU with -icount shift=0 so that blocks (and therefore counts) are identical run to run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_api.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_API_VERSION;

struct block {
    uint64_t executions;
    struct block *next;
    size_t n_insns;
    uint64_t insn_vaddr[];
};

static struct block *blocks;
static char out_path[4096];

static void count_block(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    struct block *b = calloc(1, sizeof(*b) + n * sizeof(uint64_t));
    (void)id;
    if (b == NULL) {
        abort();
    }
    b->n_insns = n;
    for (size_t i = 0; i < n; i++) {
        b->insn_vaddr[i] = qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(tb, i));
    }
    b->next = blocks;
    blocks = b;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->executions, 1);
}

static void write_counts(qemu_plugin_id_t id, void *userdata)
{
    FILE *out = fopen(out_path, "w");
    (void)id;
    (void)userdata;
    if (out == NULL) {
        return;
    }
    for (struct block *b = blocks; b != NULL; b = b->next) {
        for (size_t i = 0; b->executions != 0 && i < b->n_insns; i++) {
            fprintf(out, "%llx %llu\n", (unsigned long long)b->insn_vaddr[i],
                    (unsigned long long)b->executions);
        }
    }
    fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            snprintf(out_path, sizeof(out_path), "%s", argv[i] + 4);
        }
    }
    if (out_path[0] == '\0') {
        fprintf(stderr, "insn_count: pass out=PATH\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, count_block);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
