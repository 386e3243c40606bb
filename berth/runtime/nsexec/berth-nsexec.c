/* berth-nsexec: the process of one `docker exec`, set up without Python between fork and execve.
 *
 * The shim starts it with posix_spawn (vfork: no page-table copy, no Python in the child) inside
 * the container's pid namespace; berth/runtime/nsexec/__init__.py writes its argv (see `parse`)
 * from the exec's Plan. It takes the steps init.py's run_exec_now takes, in the same order, and
 * reports a failure the same way (one framed SetupError or ExecError on the report fd, a
 * 4-byte big-endian length and JSON, then exit), so the client sees the same words:
 *
 *   stdio -> setsid -> cgroup ("0" into each file) -> rlimits -> setns (the user ns last:
 *   become its root) -> console (tty) -> user lookup in the container's /etc -> no_new_privs
 *   -> seccomp (early, without nnp) -> bounding set, groups, gid, uid, cwd, capset, ambient
 *   -> umask -> PATH lookup -> fds CLOEXEC -> seccomp (late) -> execve
 *
 * Signals are reset by the caller's posix_spawn (POSIX_SPAWN_SETSIGDEF for all, an empty mask).
 *
 * Only libc and the kernel's headers; built by `python -m berth.runtime.nsexec build`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLONE_NEWUSER
#define CLONE_NEWUSER 0x10000000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC 4
#endif
#define F_TERMINAL 1
#define F_NNP 2
#define F_SECCOMP_EARLY 4
#define F_CAPS 8
#define F_DROP_IF_NOT_ROOT 16
#define F_RESOLVE_USER 32
#define MAX_GIDS 256
#define FILE_MAX (1 << 20)

static int report_fd = -1;
static const char *step = "start";

/* -- reporting (init.py's _sync frames) --------------------------------------------------- */

static size_t json_str(char *out, size_t cap, size_t n, const char *s) {
    static const char hex[] = "0123456789abcdef";
    if (n < cap) out[n++] = '"';
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { out[n++] = '\\'; out[n++] = (char)c; }
        else if (c < 0x20) {
            memcpy(out + n, "\\u00", 4); n += 4;
            out[n++] = hex[c >> 4]; out[n++] = hex[c & 15];
        } else out[n++] = (char)c;
    }
    if (n < cap) out[n++] = '"';
    return n;
}

static void send_frame(const char *type, const char *stepname, const char *message, int err) {
    static char buf[8192];
    size_t n = 4;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "{\"type\":\"%s\",", type);
    if (stepname) {
        n += (size_t)snprintf(buf + n, sizeof buf - n, "\"step\":");
        n = json_str(buf, sizeof buf - 64, n, stepname);
        buf[n++] = ',';
    }
    n += (size_t)snprintf(buf + n, sizeof buf - n, "\"message\":");
    n = json_str(buf, sizeof buf - 64, n, message);
    if (stepname) n += (size_t)snprintf(buf + n, sizeof buf - n, ",\"errno\":%d", err);
    buf[n++] = '}';
    uint32_t len = (uint32_t)(n - 4);
    buf[0] = (char)(len >> 24); buf[1] = (char)(len >> 16); buf[2] = (char)(len >> 8); buf[3] = (char)len;
    for (size_t off = 0; off < n;) {
        ssize_t w = write(report_fd, buf + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
}

/* strerror with its first letter lowercased, as init.describe words it */
static const char *lower_strerror(int err) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s", strerror(err));
    if (buf[0] >= 'A' && buf[0] <= 'Z') buf[0] = (char)(buf[0] - 'A' + 'a');
    return buf;
}

/* init.describe: "<call> <path>: <error>"; either may be absent */
static void fail_os(const char *call, const char *path, int err) {
    char msg[4096];
    const char *text = lower_strerror(err);
    if (call && path) snprintf(msg, sizeof msg, "%s %s: %s", call, path, text);
    else if (call || path) snprintf(msg, sizeof msg, "%s: %s", call ? call : path, text);
    else snprintf(msg, sizeof msg, "%s", text);
    send_frame("SetupError", step, msg, err);
    _exit(1);
}

static void fail_user(const char *msg) {
    send_frame("SetupError", step, msg, 0);
    _exit(1);
}

static void fail_exec(const char *msg, int code) {
    send_frame("ExecError", NULL, msg, 0);
    _exit(code);
}

/* -- the description (argv) --------------------------------------------------------------- */

struct desc {
    int stdio[3], console, bpf_fd, flags;
    size_t bpf_len;
    uid_t uid;
    gid_t gid;
    mode_t umask;
    uint64_t bounding, effective, permitted, inheritable, ambient;
    int last_cap;
    const char *resolve_user, *cwd;
    char **ns;      int n_ns;       /* fd, flag pairs */
    char **cgroup;  int n_cgroup;
    char **rlimits; int n_rlimits;  /* resource, soft, hard triples */
    char **gids;    int n_gids;
    char **group_add; int n_group_add;
    char **env;     int n_env;
    char **args;    int n_args;
};

static char **cursor;

static const char *next_arg(void) {
    if (!*cursor) _exit(2);
    return *cursor++;
}

static unsigned long long num(void) { return strtoull(next_arg(), NULL, 0); }

static char **list(int *n, int per) {
    *n = (int)num();
    char **start = cursor;
    for (int i = 0; i < *n * per; i++) next_arg();
    return start;
}

static void parse(struct desc *d, char **argv) {
    cursor = argv + 1;
    report_fd = (int)num();
    for (int i = 0; i < 3; i++) d->stdio[i] = (int)num();
    d->console = (int)(long long)num();
    d->bpf_fd = (int)(long long)num();
    d->bpf_len = (size_t)num();
    d->flags = (int)num();
    d->uid = (uid_t)num();
    d->gid = (gid_t)num();
    d->umask = (mode_t)num();
    d->bounding = num(); d->effective = num(); d->permitted = num();
    d->inheritable = num(); d->ambient = num();
    d->last_cap = (int)num();
    d->resolve_user = next_arg();
    d->cwd = next_arg();
    d->ns = list(&d->n_ns, 2);
    d->cgroup = list(&d->n_cgroup, 1);
    d->rlimits = list(&d->n_rlimits, 3);
    d->gids = list(&d->n_gids, 1);
    d->group_add = list(&d->n_group_add, 1);
    d->env = list(&d->n_env, 1);
    d->args = list(&d->n_args, 1);
}

/* -- the steps ------------------------------------------------------------------------------ */

static void setup_stdio(const int fds[3]) {
    int tmp[3];
    for (int i = 0; i < 3; i++) if ((tmp[i] = dup(fds[i])) < 0) _exit(1);
    for (int i = 0; i < 3; i++) {
        if (dup2(tmp[i], i) < 0) _exit(1);
        close(tmp[i]);
    }
}

static void join_cgroup(const struct desc *d) {
    step = "cgroup";
    for (int i = 0; i < d->n_cgroup; i++) {
        int fd = open(d->cgroup[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT) continue;  /* the container is stopping */
            fail_os(NULL, d->cgroup[i], errno);
        }
        if (write(fd, "0", 1) < 0 && errno != ESRCH && errno != ENOENT) fail_os(NULL, NULL, errno);
        close(fd);
    }
}

static const char *const RLIMIT_NAMES[] = {"CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE",
    "MEMLOCK", "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"};

static void set_rlimits(const struct desc *d) {
    step = "rlimits";  /* before the user namespace: raising a hard limit needs host caps */
    for (int i = 0; i < d->n_rlimits; i++) {
        int res = atoi(d->rlimits[3 * i]);
        struct rlimit r = {strtoull(d->rlimits[3 * i + 1], NULL, 0), strtoull(d->rlimits[3 * i + 2], NULL, 0)};
        if (prlimit(0, (enum __rlimit_resource)res, &r, NULL) < 0)
            fail_os("prlimit", res >= 0 && res < 16 ? RLIMIT_NAMES[res] : "?", errno);
    }
}

static void join_namespaces(const struct desc *d) {
    step = "namespaces";  /* in the order given: mnt after the others, the user namespace last */
    for (int i = 0; i < d->n_ns; i++) {
        int fd = atoi(d->ns[2 * i]), flag = (int)strtol(d->ns[2 * i + 1], NULL, 0);
        if (setns(fd, flag) < 0) fail_os("setns", NULL, errno);
        close(fd);
        if (flag == CLONE_NEWUSER) {
            if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                fail_os(NULL, NULL, errno);
        }
    }
}

/* init._console(bind=False): a pty of the container's devpts, its master sent to the shim */
static void console(int sock) {
    step = "console";
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC), unlock = 0;
    unsigned int n;
    if (master < 0) fail_os(NULL, "/dev/ptmx", errno);
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCGPTN, &n) < 0)
        fail_os("ioctl(TIOCGPTN)", "/dev/ptmx", errno);
    char path[64];
    snprintf(path, sizeof path, "/dev/pts/%u", n);
    int slave = open(path, O_RDWR | O_NOCTTY);
    if (slave < 0) fail_os(NULL, path, errno);
    char data = 'm', control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&data, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &master, sizeof(int));
    if (sendmsg(sock, &msg, 0) < 0) fail_os(NULL, NULL, errno);
    close(sock);
    close(master);
    for (int i = 0; i < 3; i++) if (dup2(slave, i) < 0) fail_os(NULL, NULL, errno);
    if (slave > 2) close(slave);
    if (ioctl(0, TIOCSCTTY, 0) < 0) fail_os("ioctl(TIOCSCTTY)", NULL, errno);
}

/* -- users and groups: users.py's rules, on the container's /etc ---------------------------- */

static char *read_file(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return calloc(1, 1);
        fail_os(NULL, path, errno);
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) fail_os(NULL, path, ENOMEM);
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) fail_os(NULL, path, errno);
        if (r == 0) break;
        n += (size_t)r;
        if (n == cap) {
            if (cap >= FILE_MAX) break;
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    close(fd);
    buf[n] = 0;
    return buf;
}

/* users._int: digits only -> 1 and *out; else 0 */
static int digits(const char *s, unsigned long *out) {
    if (!*s) return 0;
    for (const char *p = s; *p; p++) if (*p < '0' || *p > '9') return 0;
    *out = strtoul(s, NULL, 10);
    return 1;
}

/* One parsed line of /etc/passwd or /etc/group: fields split on ':' in place (strip()ped). */
struct line { char *f[8]; int n; };

static int next_line(char **pos, struct line *l, int want) {
    while (**pos) {
        char *s = *pos, *e = s + strcspn(s, "\r\n");
        *pos = *e ? e + 1 : e;
        *e = 0;
        if (*s == '#') continue;
        while (*s == ' ' || *s == '\t' || *s == '\v' || *s == '\f') s++;
        char *t = s + strlen(s);
        while (t > s && (t[-1] == ' ' || t[-1] == '\t' || t[-1] == '\v' || t[-1] == '\f')) *--t = 0;
        l->n = 0;
        for (char *p = s;; ) {
            if (l->n < 8) l->f[l->n] = p;
            l->n++;
            char *colon = strchr(p, ':');
            if (!colon) break;
            *colon = 0;
            p = colon + 1;
        }
        if (l->n >= want) return 1;
    }
    return 0;
}

struct pw { const char *name, *home; unsigned long uid, gid; };

/* users.parse_passwd + the first entry matching the name or (when numeric) the uid */
static int find_passwd(const char *text, const char *name, int by_uid, unsigned long uid, int need_home,
                       struct pw *out) {
    char *copy = strdup(text), *pos = copy;
    struct line l;
    while (next_line(&pos, &l, 4)) {
        unsigned long u, g;
        if (!digits(l.f[2], &u) || !digits(l.f[3], &g)) continue;
        if (need_home && (l.n < 6 || !*l.f[5])) continue;  /* users.home_of */
        if ((name && strcmp(l.f[0], name) == 0) || (by_uid && u == uid)) {
            out->name = l.f[0]; out->uid = u; out->gid = g;
            out->home = l.n > 5 ? l.f[5] : "";
            return 1;  /* copy stays allocated: out points into it */
        }
    }
    free(copy);
    return 0;
}

static void add_gid(gid_t *gids, int *n, unsigned long g) {
    for (int i = 0; i < *n; i++) if (gids[i] == (gid_t)g) return;  /* dict.fromkeys */
    if (*n < MAX_GIDS) gids[(*n)++] = (gid_t)g;
}

/* A group by name, or by number when ``as_text`` (str(gid) == name) or ``by_gid``. */
static int find_group(const char *text, const char *name, int as_text, int by_gid, unsigned long gid,
                      unsigned long *out) {
    char *copy = strdup(text), *pos = copy;
    struct line l;
    int found = 0;
    while (!found && next_line(&pos, &l, 3)) {
        unsigned long g;
        char num_text[32];
        if (!digits(l.f[2], &g)) continue;
        snprintf(num_text, sizeof num_text, "%lu", g);
        if (strcmp(l.f[0], name) == 0 || (as_text && strcmp(num_text, name) == 0) || (by_gid && g == gid)) {
            *out = g;
            found = 1;
        }
    }
    free(copy);
    return found;
}

/* the groups listing ``user`` as a member */
static void member_groups(const char *text, const char *user, gid_t *gids, int *n, gid_t primary) {
    char *copy = strdup(text), *pos = copy;
    struct line l;
    while (next_line(&pos, &l, 3)) {
        unsigned long g;
        if (!digits(l.f[2], &g) || l.n < 4) continue;
        for (char *m = strtok(l.f[3], ","); m; m = strtok(NULL, ","))
            if (strcmp(m, user) == 0 && g != primary) add_gid(gids, n, g);
    }
    free(copy);
}

struct ids { uid_t uid; gid_t gid; gid_t gids[MAX_GIDS]; int n_gids; const char *home; };

/* init._user: the process's ids, groups and home */
static void resolve_user(const struct desc *d, struct ids *out) {
    step = "user";
    char *passwd = read_file("/etc/passwd");
    char *groups = (d->flags & F_RESOLVE_USER) || d->n_group_add ? read_file("/etc/group") : calloc(1, 1);
    gid_t added[MAX_GIDS];
    int n_added = 0;
    char msg[1024];
    for (int i = 0; i < d->n_group_add; i++) {  /* users.additional_groups */
        unsigned long g;
        const char *ag = d->group_add[i];
        if (!find_group(groups, ag, 1, 0, 0, &g)) {
            if (!digits(ag, &g)) {
                snprintf(msg, sizeof msg, "Unable to find group %s: no matching entries in group file", ag);
                fail_user(msg);
            }
        }
        add_gid(added, &n_added, g);
    }
    out->n_gids = 0;
    struct pw pw;
    if (d->flags & F_RESOLVE_USER) {  /* users.resolve */
        char user[512];
        snprintf(user, sizeof user, "%s", *d->resolve_user ? d->resolve_user : "0");
        char *group = strchr(user, ':');
        if (group) *group++ = 0;
        unsigned long uid_num = 0, gid_num = 0;
        int numeric = digits(user, &uid_num);
        int found = find_passwd(passwd, user, numeric, uid_num, 0, &pw);
        if (!found && !numeric) {
            snprintf(msg, sizeof msg, "unable to find user %s: no matching entries in passwd file", user);
            fail_user(msg);
        }
        out->uid = (uid_t)(found ? pw.uid : uid_num);
        out->gid = (gid_t)(found ? pw.gid : 0);
        out->home = found && *pw.home ? pw.home : "/";
        if (group && *group) {
            unsigned long g;
            int gnum = digits(group, &gid_num);
            if (find_group(groups, group, 0, gnum, gid_num, &g)) out->gid = (gid_t)g;
            else if (!gnum) {
                snprintf(msg, sizeof msg, "unable to find group %s: no matching entries in group file", group);
                fail_user(msg);
            } else out->gid = (gid_t)gid_num;
            add_gid(out->gids, &out->n_gids, out->gid);
        } else {
            add_gid(out->gids, &out->n_gids, out->gid);
            if (found) member_groups(groups, pw.name, out->gids, &out->n_gids, out->gid);
        }
        for (int i = 1; i < d->n_gids; i++) add_gid(out->gids, &out->n_gids, strtoul(d->gids[i], NULL, 10));
    } else {
        out->uid = d->uid;
        out->gid = d->gid;
        for (int i = 0; i < d->n_gids; i++) add_gid(out->gids, &out->n_gids, strtoul(d->gids[i], NULL, 10));
        out->home = find_passwd(passwd, NULL, 1, d->uid, 1, &pw) ? pw.home : "/";
    }
    for (int i = 0; i < n_added; i++) add_gid(out->gids, &out->n_gids, added[i]);
}

/* -- privileges ---------------------------------------------------------------------------- */

static int setgroups_allowed(void) {
    int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 1;
    char buf[16] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n < 0 || strncmp(buf, "deny", 4) != 0;
}

static void capset_all(uint64_t eff, uint64_t perm, uint64_t inh) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {
        {(uint32_t)eff, (uint32_t)perm, (uint32_t)inh},
        {(uint32_t)(eff >> 32), (uint32_t)(perm >> 32), (uint32_t)(inh >> 32)},
    };
    if (syscall(SYS_capset, &hdr, data) < 0) fail_os("capset", NULL, errno);
}

/* init._drop_privileges */
static void drop_privileges(const struct desc *d, const struct ids *ids) {
    step = "capabilities";
    int caps = d->flags & F_CAPS;
    if (caps) {
        for (int n = 0; n <= d->last_cap; n++)
            if (!(d->bounding & (1ULL << n)) && prctl(PR_CAPBSET_DROP, n, 0, 0, 0) < 0)
                fail_os("prctl(PR_CAPBSET_DROP)", NULL, errno);
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail_os("prctl(PR_SET_KEEPCAPS)", NULL, errno);
    }
    /* A rootless engine's single-id map denies setgroups(2): the engine's groups stay. */
    if (setgroups((size_t)ids->n_gids, ids->gids) < 0 && !(errno == EPERM && !setgroups_allowed()))
        fail_os(NULL, NULL, errno);
    if (setresgid(ids->gid, ids->gid, ids->gid) < 0) fail_os(NULL, NULL, errno);
    if (setresuid(ids->uid, ids->uid, ids->uid) < 0) fail_os(NULL, NULL, errno);
    int cwd_done = 1;
    if (chdir(d->cwd) < 0) {
        if (errno != EACCES && errno != EPERM) fail_os(NULL, d->cwd, errno);
        cwd_done = 0;
    }
    if (caps) {
        uint64_t eff = d->effective, perm = d->permitted, amb = d->ambient;
        if ((d->flags & F_DROP_IF_NOT_ROOT) && ids->uid != 0) eff = perm = amb = 0;
        capset_all(eff, perm, d->inheritable);
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
            fail_os("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", NULL, errno);
        for (int n = 0; n <= d->last_cap; n++)
            if ((amb & (1ULL << n)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, n, 0, 0) < 0)
                fail_os("prctl(PR_CAP_AMBIENT_RAISE)", NULL, errno);
        if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) fail_os("prctl(PR_SET_KEEPCAPS)", NULL, errno);
    }
    if (!cwd_done && chdir(d->cwd) < 0) fail_os(NULL, d->cwd, errno);
}

static int load_seccomp(struct sock_fprog *prog) {
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog, 0, 0);
}

static void seccomp_fail(int err) {
    /* berth.linux.seccomp raises OSError(err, "seccomp", "prctl(PR_SET_SECCOMP): <Strerror>") */
    char what[300];
    snprintf(what, sizeof what, "prctl(PR_SET_SECCOMP): %s", strerror(err));
    fail_os("seccomp", what, err);
}

/* -- the PATH lookup (users.lookup_path: Go's exec.LookPath wording) ------------------------ */

static int executable(const char *path, int *err) {
    struct stat st;
    if (stat(path, &st) < 0) { *err = errno; return -1; }
    return !S_ISDIR(st.st_mode) && (st.st_mode & 0111);
}

static const char *lookup_path(const char *name, char **env, int n_env, char *msg, size_t cap) {
    static char found[4096];
    int err = 0;
    if (strchr(name, '/')) {
        int ok = executable(name, &err);
        if (ok > 0) return name;
        if (ok == 0) snprintf(msg, cap, "exec: \"%s\": permission denied", name);
        else snprintf(msg, cap, "exec: \"%s\": stat %s: %s", name, name, lower_strerror(err));
        return NULL;
    }
    const char *path_env = "";
    for (int i = n_env - 1; i >= 0; i--)
        if (strncmp(env[i], "PATH=", 5) == 0) { path_env = env[i] + 5; break; }
    for (const char *p = path_env;;) {
        size_t len = strcspn(p, ":");
        const char *dir = len ? p : ".";
        int dlen = len ? (int)len : 1;
        snprintf(found, sizeof found, "%.*s%s%s", dlen, dir, dir[dlen - 1] == '/' ? "" : "/", name);
        if (executable(found, &err) > 0) return found;
        if (!p[len]) break;
        p += len + 1;
    }
    snprintf(msg, cap, "exec: \"%s\": executable file not found in $PATH", name);
    return NULL;
}

/* glibc's posix_spawn child leaves its two internal signals (32, 33: thread cancellation and
 * setxid) ignored, and glibc's sigaction refuses them: the kernel's call puts them back to
 * default, or the command would start with them ignored (the Python child's do not). */
static void default_internal_signals(void) {
    struct { void *handler; unsigned long flags; void *restorer; uint64_t mask; } dfl = {0};
    for (int sig = 32; sig <= 33; sig++) syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
}

int main(int argc, char **argv) {
    (void)argc;
    struct desc d;
    /* Not dumpable until execve: a container process may not open our /proc/<pid>/exe (the
     * host's binary) while we are in its namespaces (CVE-2019-5736). */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    default_internal_signals();
    parse(&d, argv);
    static struct sock_filter filter[BPF_MAXINSNS];
    struct sock_fprog prog = {(unsigned short)(d.bpf_len / sizeof(struct sock_filter)), filter};
    if (d.bpf_fd >= 0) {
        if (d.bpf_len > sizeof filter || pread(d.bpf_fd, filter, d.bpf_len, 0) != (ssize_t)d.bpf_len) _exit(1);
        close(d.bpf_fd);
    }
    setup_stdio(d.stdio);
    if (setsid() < 0) _exit(1);
    if ((d.flags & F_TERMINAL) && isatty(0) && ioctl(0, TIOCSCTTY, 0) < 0) _exit(1);
    join_cgroup(&d);
    set_rlimits(&d);
    join_namespaces(&d);
    if ((d.flags & F_TERMINAL) && d.console >= 0) console(d.console);
    struct ids ids;
    resolve_user(&d, &ids);
    /* the exec's env (planned, one entry per key) and HOME when it has none */
    char **env = calloc((size_t)d.n_env + 2, sizeof *env);
    int n_env = 0, has_home = 0;
    for (int i = 0; i < d.n_env; i++) {
        env[n_env++] = d.env[i];
        has_home |= strncmp(d.env[i], "HOME=", 5) == 0;
    }
    if (!has_home && asprintf(&env[n_env++], "HOME=%s", ids.home) < 0) _exit(1);
    env[n_env] = NULL;
    if (d.flags & F_NNP) {
        step = "no_new_privs";
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail_os("prctl(PR_SET_NO_NEW_PRIVS)", NULL, errno);
    }
    if ((d.flags & F_SECCOMP_EARLY) && d.bpf_fd >= 0) {
        step = "seccomp";
        if (load_seccomp(&prog) < 0) seccomp_fail(errno);
    }
    drop_privileges(&d, &ids);
    umask(d.umask);
    step = "exec";
    char error[8192];
    const char *path = lookup_path(d.args[0], env, n_env, error, sizeof error);
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    if (!path) fail_exec(error, 127);
    if (!(d.flags & F_SECCOMP_EARLY) && d.bpf_fd >= 0 && load_seccomp(&prog) < 0) {
        char what[300];
        snprintf(what, sizeof what, "load seccomp filter: seccomp prctl(PR_SET_SECCOMP): %s: %s", strerror(errno),
                 lower_strerror(errno));
        fail_exec(what, 1);
    }
    char **args = calloc((size_t)d.n_args + 1, sizeof *args);
    for (int i = 0; i < d.n_args; i++) args[i] = d.args[i];
    execve(path, args, env);
    int err = errno;
    snprintf(error, sizeof error, "exec: \"%s\": %s", d.args[0], lower_strerror(err));
    fail_exec(error, err == ENOENT ? 127 : 126);
    return 1;
}
