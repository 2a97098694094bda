/*
 * replay.c - runs fuzz_conn's target over files, without libFuzzer: how CI
 * replays the seed corpus (and any crash reproducer) under ASan+UBSan with
 * the regular compiler.
 *
 *   build/asan/fuzz-replay tests/fuzz/corpus/<files>
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (f == NULL) {
            perror(argv[i]);
            return 1;
        }
        static uint8_t buf[1 << 20];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        n++;
    }
    printf("fuzz-replay: %d inputs, no crash\n", n);
    return 0;
}
