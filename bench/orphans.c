/*
 * orphans: the app for the "reap 10,000 orphans" row of bench/supervise.
 *
 * Run as the child of an init that is PID 1 of a fresh PID namespace with its own /proc
 * (`unshare --pid --fork --mount-proc INIT orphans [N]`). It forks an intermediate process,
 * which forks N (default 10000) children that _exit(0) at once and then exits itself without
 * waiting for them: its N zombie children are re-parented to PID 1, the init, which has to reap
 * them. The app reaps only the intermediate, then polls /proc until no process other than
 * PID 1 and itself is left (zombies count: they are still listed in /proc), and exits 0.
 *
 * Exit codes: 0 clean, 1 /proc still not clean after the deadline (count on stderr), 2 setup
 * error. On success it prints, on stdout, three CLOCK_MONOTONIC readings in nanoseconds: its
 * start, the intermediate reaped (all N children forked and exited), and /proc clean.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Processes in /proc other than PID 1 and `self`; -1 if /proc cannot be read. */
static long others(pid_t self) {
    DIR *d = opendir("/proc");
    if (!d) return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *s = e->d_name;
        if (*s < '0' || *s > '9') continue;
        char *end;
        long pid = strtol(s, &end, 10);
        if (*end != '\0') continue;
        if (pid != 1 && pid != (long)self) n++;
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv) {
    long count = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
    double deadline_s = argc > 2 ? strtod(argv[2], NULL) : 60.0;
    long long t_start = now_ns();
    pid_t self = getpid();

    pid_t mid = fork();
    if (mid < 0) { perror("orphans: fork"); return 2; }
    if (mid == 0) {
        for (long i = 0; i < count; i++) {
            pid_t c = fork();
            if (c == 0) _exit(0);
            if (c < 0) {
                if (errno == EINTR) { i--; continue; }
                perror("orphans: fork (intermediate)");
                _exit(2);
            }
        }
        _exit(0); /* without waiting: its zombies go to PID 1 */
    }
    int status;
    while (waitpid(mid, &status, 0) < 0) {
        if (errno != EINTR) { perror("orphans: waitpid"); return 2; }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "orphans: intermediate failed (status %d)\n", status);
        return 2;
    }
    long long t0 = now_ns();
    long long deadline = t0 + (long long)(deadline_s * 1e9);
    struct timespec pause = {0, 200000}; /* 0.2 ms between scans */
    for (;;) {
        long n = others(self);
        if (n < 0) { perror("orphans: /proc"); return 2; }
        if (n == 0) break;
        if (now_ns() > deadline) {
            fprintf(stderr, "orphans: %ld processes still in /proc after %.0f s\n", n, deadline_s);
            return 1;
        }
        nanosleep(&pause, NULL);
    }
    printf("%lld %lld %lld\n", t_start, t0, now_ns());
    return 0;
}
