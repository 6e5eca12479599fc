/*
 * LD_PRELOAD shim for the benchmark (tools/bench.sh): partclone's progress
 * thread loops on sleep(opt.fresh) (2 s unless -f N), and main() joins it at
 * the end, so every partclone run is rounded up to the next multiple of 2 s
 * after the copy itself has finished.  This makes sleep(N) a 5 ms nap, so
 * the measured time is the copy.  Nothing else in partclone calls sleep().
 *
 *   cc -O2 -shared -fPIC -o partclone-nosleep.so partclone-nosleep.c
 */
#include <time.h>

unsigned int sleep(unsigned int seconds)
{
    struct timespec ts = { 0, seconds ? 5000000L : 0 };
    nanosleep(&ts, 0);
    return 0;
}
