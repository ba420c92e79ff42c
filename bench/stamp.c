/*
 * stamp: the app of bench/readiness. The first thing it does is read CLOCK_REALTIME; it then
 * writes that reading, as Unix epoch seconds with nanoseconds ("1712345678.123456789"), to the
 * file named by its only argument, and exits 0.
 *
 * CLOCK_REALTIME is the clock PostgreSQL's log_line_prefix %n reads (gettimeofday), so the
 * stamp and the server's "ready to accept connections" line can be subtracted. bench/readiness
 * links it statically, so between execve and the reading there is no dynamic loader, only the
 * C library's start-up; the harness measures that overhead (posix_spawn -> reading).
 *
 * Exit codes: 0 written, 2 usage or I/O error.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <time.h>

int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (argc != 2) {
        fputs("usage: stamp FILE\n", stderr);
        return 2;
    }
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        perror("stamp: fopen");
        return 2;
    }
    fprintf(f, "%lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    if (fclose(f) != 0) {
        perror("stamp: fclose");
        return 2;
    }
    return 0;
}
