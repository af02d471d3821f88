// Another process's CPU time and resident memory, read from /proc (Linux only).
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

// utime + stime of every thread of `pid`, in seconds; -1 if the process is gone.
inline double serverCpuSeconds(int pid) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *file = std::fopen(path, "r");
    if (!file) return -1;
    char line[1024];
    size_t n = std::fread(line, 1, sizeof line - 1, file);
    std::fclose(file);
    line[n] = '\0';
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are plain.
    const char *rest = std::strrchr(line, ')');
    if (!rest) return -1;
    unsigned long utime = 0, stime = 0;
    if (std::sscanf(rest + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return -1;
    return double(utime + stime) / double(sysconf(_SC_CLK_TCK));
}

// VmRSS of `pid` in KiB; -1 if the process is gone.
inline long serverRssKb(int pid) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *file = std::fopen(path, "r");
    if (!file) return -1;
    char line[256];
    long kb = -1;
    while (std::fgets(line, sizeof line, file)) {
        if (std::strncmp(line, "VmRSS:", 6) == 0) {
            kb = std::atol(line + 6);
            break;
        }
    }
    std::fclose(file);
    return kb;
}

// CPU seconds the whole machine spent busy (all cores, from /proc/stat): what neither the
// load generator nor the server used was taken by other work and makes a run noisy.
inline double machineBusySeconds() {
    FILE *file = std::fopen("/proc/stat", "r");
    if (!file) return -1;
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    int n = std::fscanf(file, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle, &iowait, &irq,
                        &softirq, &steal);
    std::fclose(file);
    if (n != 8) return -1;
    return double(user + nice + system + irq + softirq + steal) / double(sysconf(_SC_CLK_TCK));
}
