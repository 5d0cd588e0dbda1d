/*
 * pmpool native layer: the few syscalls JavaScript lacks, and the few file
 * operations of a handover's cold path, where Node's fs costs more than the
 * system call (the first use of each of its functions runs cold JavaScript:
 * ~0.05-0.1 ms each, a dozen of them between exec() and a restored pool);
 * and the code cache's checksum, which a cold start needs before JavaScript
 * is warm.
 *
 * Everything here is a thin, checked wrapper: no policy. Errors become a JS
 * Error with .code = errno name ("ENOENT", "ELOOP", ...), .errno, .syscall
 * and, where there is one, .path. Policy (what to refuse, and why) lives in
 * src/region.
 *
 * This file: files, liveness marks, execve and the old image's teardown,
 * the checksum, and the module table. Mappings and their huge pages are
 * mappings.c's; the argument and error helpers, helpers.c's (addon.h).
 */
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <sched.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* ---------- files ---------- */

struct env_marks;
static struct env_marks *marks_of(napi_env env, napi_callback_info info);
static void forget_marks(struct env_marks *m, int32_t fd, int64_t offset);
static int room_for_fd(struct env_marks *m);
static void remember_fd(struct env_marks *m, int32_t fd);
static void forget_fd(struct env_marks *m, int32_t fd);

/* open(path, create, exclusive, readOnly, mode) -> fd
 * Always O_NOFOLLOW (a symlink is refused with ELOOP), O_CLOEXEC (an fd
 * must not leak into a program started by execve) and O_NONBLOCK: a FIFO at
 * the path would otherwise block a read-only open until a writer comes,
 * before fstat can refuse it. On regular files and devices O_NONBLOCK
 * changes nothing pmpool does (mmap, fstat, flock with its own LOCK_NB). */
static napi_value js_open(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  char path[PATH_BYTES];
  int32_t mode;
  if (!arg_string(env, argv[0], path, sizeof path, "path")) return NULL;
  int create, exclusive, read_only;
  if (!arg_bool(env, argv[1], &create, "create") || !arg_bool(env, argv[2], &exclusive, "exclusive") ||
      !arg_bool(env, argv[3], &read_only, "readOnly"))
    return NULL;
  if (!arg_int32(env, argv[4], &mode, "mode")) return NULL;
  int flags = O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | (read_only ? O_RDONLY : O_RDWR);
  if (create) flags |= O_CREAT;
  if (exclusive) flags |= O_EXCL;
  struct env_marks *m = marks_of(env, info);
  /* Room first: a descriptor opened must be one this environment's teardown closes. */
  if (!room_for_fd(m)) {
    throw_errno(env, ENOMEM, "open", path);
    return NULL;
  }
  int fd;
  do fd = open(path, flags, (mode_t)mode);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    throw_errno(env, errno, "open", path);
    return NULL;
  }
  remember_fd(m, fd);
  return make_int64(env, fd);
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t fd;
  if (!arg_int32(env, argv[0], &fd, "fd")) return NULL;
  /* The description's marks go with it (when this was its last descriptor); none is released by
     number at this environment's teardown, when the number may name another file. */
  forget_marks(marks_of(env, info), fd, -1);
  /* Forgotten whatever close(2) answers: the descriptor is released even when it fails. */
  forget_fd(marks_of(env, info), fd);
  if (close(fd) < 0 && errno != EINTR) {
    throw_errno(env, errno, "close", NULL);
    return NULL;
  }
  return undefined(env);
}

static const char *file_type(mode_t mode) {
  if (S_ISREG(mode)) return "file";
  if (S_ISCHR(mode)) return "char";
  if (S_ISBLK(mode)) return "block";
  if (S_ISDIR(mode)) return "directory";
  if (S_ISLNK(mode)) return "symlink";
  if (S_ISFIFO(mode)) return "fifo";
  if (S_ISSOCK(mode)) return "socket";
  return "unknown";
}


/* fstat(fd) -> { size, uid, gid, mode, type, blocks, blksize, rdevMajor, rdevMinor, dev, ino } */
static napi_value js_fstat(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t fd;
  if (!arg_int32(env, argv[0], &fd, "fd")) return NULL;
  struct stat st;
  if (fstat(fd, &st) < 0) {
    throw_errno(env, errno, "fstat", NULL);
    return NULL;
  }
  napi_value obj, type;
  napi_create_object(env, &obj);
  set_number(env, obj, "size", (int64_t)st.st_size);
  set_number(env, obj, "uid", (int64_t)st.st_uid);
  set_number(env, obj, "gid", (int64_t)st.st_gid);
  set_number(env, obj, "mode", (int64_t)(st.st_mode & 07777));
  set_number(env, obj, "blocks", (int64_t)st.st_blocks);
  set_number(env, obj, "blksize", (int64_t)st.st_blksize);
  set_number(env, obj, "rdevMajor", (int64_t)major(st.st_rdev));
  set_number(env, obj, "rdevMinor", (int64_t)minor(st.st_rdev));
  set_number(env, obj, "dev", (int64_t)st.st_dev);
  set_number(env, obj, "ino", (int64_t)st.st_ino);
  napi_create_string_utf8(env, file_type(st.st_mode), NAPI_AUTO_LENGTH, &type);
  napi_set_named_property(env, obj, "type", type);
  /* The file system's type and block size (fstatfs on the same fd): tmpfs,
     hugetlbfs (whose block size is its huge page size), or other. */
  struct statfs fs;
  if (fstatfs(fd, &fs) < 0) {
    throw_errno(env, errno, "fstatfs", NULL);
    return NULL;
  }
  set_number(env, obj, "fsType", (int64_t)(uint32_t)fs.f_type);
  set_number(env, obj, "fsBlockSize", (int64_t)fs.f_bsize);
  return obj;
}

/* read(2) until `want` bytes or the end of the file, through EINTR: the bytes
   read (fewer than `want` only at the end), or -1 with errno set. */
static ssize_t read_fully(int fd, char *buf, size_t want) {
  size_t n = 0;
  while (n < want) {
    ssize_t r = read(fd, buf + n, want - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    n += (size_t)r;
  }
  return (ssize_t)n;
}

/* open(2) + fstat(2) of what was opened: the fd, or -1 with the error thrown. */
static int open_and_stat(napi_env env, const char *path, int flags, struct stat *st) {
  int fd;
  do fd = open(path, flags);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    throw_errno(env, errno, "open", path);
    return -1;
  }
  if (fstat(fd, st) < 0) {
    int e = errno;
    close(fd);
    throw_errno(env, e, "fstat", path);
    return -1;
  }
  return fd;
}

/* readFile(path, maxBytes, noFollow, device) -> { data: ArrayBuffer, type, uid, mode, size }
 * At most maxBytes of a file (to its end: a /proc file's size says 0), and
 * what fstat says of the very file read, so that a caller checks the owner
 * and mode of what it read, not of what the path names a moment later.
 * noFollow refuses a symbolic link (ELOOP). `device` false reads only a
 * regular file of at most maxBytes (by its size; a /proc file's is 0);
 * `device` true reads only a character device (maxBytes of it). Anything
 * else is opened (O_NONBLOCK: a FIFO never blocks) and fstat'd but not read:
 * data is empty, and the caller refuses by type or size. Reading is never
 * how a refusal is found: a read from a terminal or another device consumes
 * what it reads. */
static napi_value js_read_file(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  char path[PATH_BYTES];
  int64_t max;
  if (!arg_string(env, argv[0], path, sizeof path, "path") || !arg_int64(env, argv[1], &max, "maxBytes")) return NULL;
  if (max < 0 || max > ((int64_t)1 << 30)) {
    throw_errno(env, EINVAL, "readFile (maxBytes must be 0 to 1 GiB)", NULL);
    return NULL;
  }
  int no_follow, device;
  if (!arg_bool(env, argv[2], &no_follow, "noFollow") || !arg_bool(env, argv[3], &device, "device")) return NULL;
  int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | (no_follow ? O_NOFOLLOW : 0);
  struct stat st;
  int fd = open_and_stat(env, path, flags, &st);
  if (fd < 0) return NULL;
  size_t cap = 0, n = 0;
  char *buf = NULL;
  if (device ? S_ISCHR(st.st_mode) : (S_ISREG(st.st_mode) && st.st_size <= max)) {
    cap = st.st_size > 0 && st.st_size < max ? (size_t)st.st_size + 1 : 4096;
    if (cap > (size_t)max) cap = (size_t)max;
    buf = malloc(cap ? cap : 1);
    while (buf && n < (size_t)max) {
      if (n == cap) {
        size_t grown = cap * 2 > (size_t)max ? (size_t)max : cap * 2;
        char *more = realloc(buf, grown);
        if (!more) {
          free(buf);
          buf = NULL;
          break;
        }
        buf = more;
        cap = grown;
      }
      ssize_t got = read_fully(fd, buf + n, cap - n);
      if (got < 0) {
        int e = errno;
        free(buf);
        close(fd);
        throw_errno(env, e, "read", path);
        return NULL;
      }
      n += (size_t)got;
      if (n < cap) break; /* the end of the file (or all a device gives at once) */
    }
    if (!buf) {
      close(fd);
      throw_errno(env, ENOMEM, "readFile", path);
      return NULL;
    }
  }
  close(fd);
  napi_value out, data, type;
  void *bytes;
  if (napi_create_arraybuffer(env, n, &bytes, &data) != napi_ok) {
    free(buf);
    throw_errno(env, ENOMEM, "readFile", path);
    return NULL;
  }
  if (n) memcpy(bytes, buf, n);
  free(buf);
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "data", data);
  napi_create_string_utf8(env, file_type(st.st_mode), NAPI_AUTO_LENGTH, &type);
  napi_set_named_property(env, out, "type", type);
  set_number(env, out, "uid", (int64_t)st.st_uid);
  set_number(env, out, "mode", (int64_t)(st.st_mode & 07777));
  set_number(env, out, "size", (int64_t)st.st_size);
  return out;
}

/* loadFile(path) -> ArrayBuffer
 * A private copy of a whole regular file, in memory mapped for it: how the
 * bundle loader reads the bundle and its code cache on every cold start.
 * Against readFileSync it saves Node's cold read path and a page fault per
 * page of the fresh buffer: the pages are mapped in one call (MAP_POPULATE)
 * and filled by read(2) (~0.4 ms less for the two files). A copy, not a
 * mapping of the file: what was checksummed is what V8 compiles, even if
 * someone rewrites the file in place meanwhile, and a file truncated under
 * it is a short read (EIO), never a SIGBUS. Read-only once filled.
 * Symbolic links are followed (a package is often reached through one);
 * anything but a regular file is refused with EINVAL. An empty file gives
 * an empty ArrayBuffer, which is no mapping. munmap() releases it. */
napi_value js_load_file(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  char path[PATH_BYTES];
  if (!arg_string(env, argv[0], path, sizeof path, "path")) return NULL;
  struct stat st;
  int fd = open_and_stat(env, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, &st);
  if (fd < 0) return NULL;
  if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > MAX_WINDOW_BYTES) {
    close(fd);
    throw_errno(env, S_ISREG(st.st_mode) ? EFBIG : EINVAL, "loadFile (a regular file of at most 4 GiB)", path);
    return NULL;
  }
  if (st.st_size == 0) {
    close(fd);
    void *data;
    napi_value empty;
    napi_create_arraybuffer(env, 0, &data, &empty);
    return empty;
  }
  size_t size = (size_t)st.st_size;
  char *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (addr == MAP_FAILED) {
    int e = errno;
    close(fd);
    throw_errno(env, e, "mmap", path);
    return NULL;
  }
  ssize_t got = read_fully(fd, addr, size);
  if (got < 0 || (size_t)got < size) {
    int e = got < 0 ? errno : EIO; /* short: the file was cut short while read */
    close(fd);
    munmap(addr, size);
    throw_errno(env, e, got < 0 ? "read" : "loadFile (the file changed while it was read)", path);
    return NULL;
  }
  close(fd);
  mprotect(addr, size, PROT_READ);
  return wrap_mapping(env, addr, size, "loadFile");
}

/* writeFile(path, bytes, mode): creates a new file (O_EXCL, O_NOFOLLOW: never
   an existing file or a link planted at the path) holding bytes. On any
   failure the file is removed again and the errno thrown. */
static napi_value js_write_file(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  char path[PATH_BYTES];
  int32_t mode;
  bool is_typed = false;
  napi_typedarray_type kind;
  size_t length = 0;
  void *data = NULL;
  if (!arg_string(env, argv[0], path, sizeof path, "path") || !arg_int32(env, argv[2], &mode, "mode")) return NULL;
  napi_is_typedarray(env, argv[1], &is_typed);
  if (!is_typed || napi_get_typedarray_info(env, argv[1], &kind, &length, &data, NULL, NULL) != napi_ok || kind != napi_uint8_array) {
    throw_type(env, "writeFile needs a Uint8Array");
    return NULL;
  }
  int fd;
  do fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    throw_errno(env, errno, "open", path);
    return NULL;
  }
  size_t at = 0;
  while (at < length) {
    ssize_t w = write(fd, (const char *)data + at, length - at);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = w < 0 ? errno : EIO;
      close(fd);
      unlink(path);
      throw_errno(env, e, "write", path);
      return NULL;
    }
    at += (size_t)w;
  }
  if (close(fd) < 0 && errno != EINTR) {
    int e = errno;
    unlink(path);
    throw_errno(env, e, "close", path);
    return NULL;
  }
  return undefined(env);
}

/* unlink(path) */
static napi_value js_unlink(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  char path[PATH_BYTES];
  if (!arg_string(env, argv[0], path, sizeof path, "path")) return NULL;
  if (unlink(path) < 0) {
    throw_errno(env, errno, "unlink", path);
    return NULL;
  }
  return undefined(env);
}

/* gettid() -> the calling thread's kernel task id (a robust lock names its
   holder's thread by it). */
static napi_value js_gettid(napi_env env, napi_callback_info info) {
  (void)info;
  return make_int64(env, (int64_t)syscall(SYS_gettid));
}

static napi_value js_ftruncate(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int32_t fd;
  int64_t size;
  if (!arg_int32(env, argv[0], &fd, "fd") || !arg_int64(env, argv[1], &size, "size")) return NULL;
  int r;
  do r = ftruncate(fd, (off_t)size);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    throw_errno(env, errno, "ftruncate", NULL);
    return NULL;
  }
  return undefined(env);
}

/* fallocate(fd, offset, length, keepSize) */
static napi_value js_fallocate(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  int32_t fd;
  int64_t offset, length;
  if (!arg_int32(env, argv[0], &fd, "fd") || !arg_int64(env, argv[1], &offset, "offset") ||
      !arg_int64(env, argv[2], &length, "length"))
    return NULL;
  int keep_size;
  if (!arg_bool(env, argv[3], &keep_size, "keepSize")) return NULL;
  int mode = keep_size ? FALLOC_FL_KEEP_SIZE : 0;
  int r;
  do r = fallocate(fd, mode, (off_t)offset, (off_t)length);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    throw_errno(env, errno, "fallocate", NULL);
    return NULL;
  }
  return undefined(env);
}

/* flock(fd, op, nonBlocking) -> true when taken, false when EWOULDBLOCK.
 * op: 0 = unlock, 1 = shared, 2 = exclusive. */
static napi_value js_flock(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int32_t fd, op;
  if (!arg_int32(env, argv[0], &fd, "fd") || !arg_int32(env, argv[1], &op, "op")) return NULL;
  /* Any other number is a caller's mistake, not a request for an exclusive lock. */
  if (op > 2) {
    throw_type(env, "flock op must be 0 (unlock), 1 (shared) or 2 (exclusive)");
    return NULL;
  }
  int how = op == 0 ? LOCK_UN : op == 1 ? LOCK_SH : LOCK_EX;
  int no_wait;
  if (!arg_bool(env, argv[2], &no_wait, "noWait")) return NULL;
  if (no_wait) how |= LOCK_NB;
  int r;
  do r = flock(fd, how);
  while (r < 0 && errno == EINTR);
  napi_value result;
  if (r < 0) {
    if (errno == EWOULDBLOCK) {
      napi_get_boolean(env, false, &result);
      return result;
    }
    throw_errno(env, errno, "flock", NULL);
    return NULL;
  }
  napi_get_boolean(env, true, &result);
  return result;
}

/* ---------- liveness marks ----------
 *
 * An open of a pool holds a write lock on one byte of the pool's file, far past its end
 * (locks there change nothing of the file): an open file description lock (F_OFD_SETLK,
 * Linux 3.15), which the kernel drops when the last descriptor of that description is closed
 * — at close(), at the process's death whatever kills it, at an execve (the descriptors are
 * close-on-exec). Another open asks whether the byte is locked by anyone but itself
 * (F_OFD_GETLK): an answer /proc cannot give for a process of another PID namespace, whose
 * pid names nothing, or another process, in this one's. A mark is taken without waiting:
 * the byte is the open's own (its random run id), and one held by another is taken as
 * refused, not waited for.
 *
 * And at the teardown of the environment that took it — a worker thread's end, by
 * worker.terminate() too — before its descriptors are closed (a mapping would keep the
 * description, and the mark with it, until its finalizer runs): a mark says that its open's
 * thread lives, not only its process. A worker ended between its claim of the pool lock and its
 * identity has not said who it is, and only its mark can tell a waiter that it is gone. */

/* The marks this environment (the main thread, or a worker) holds, released at its teardown; and
   the descriptors open() gave it and close() did not take back, closed then. Nothing else closes a
   worker's files: a region or pool it left open kept both descriptors, and the region's flock,
   for the life of the process (a program that recycles workers ran out of descriptors). */
struct env_marks {
  size_t count, capacity;
  struct held_mark {
    int32_t fd;
    int64_t offset;
  } *held;
  size_t fd_count, fd_capacity;
  int32_t *fds;
};

static struct env_marks *marks_of(napi_env env, napi_callback_info info) {
  void *data = NULL;
  napi_get_cb_info(env, info, NULL, NULL, NULL, &data);
  return data;
}

/* Forgets the marks on `fd` at `offset` (-1: every offset). */
static void forget_marks(struct env_marks *m, int32_t fd, int64_t offset) {
  if (m == NULL) return;
  for (size_t i = 0; i < m->count;) {
    if (m->held[i].fd == fd && (offset < 0 || m->held[i].offset == offset)) m->held[i] = m->held[--m->count];
    else i++;
  }
}

/* Room for one more descriptor in the list (none kept without an environment: true). */
static int room_for_fd(struct env_marks *m) {
  if (m == NULL || m->fd_count < m->fd_capacity) return 1;
  size_t capacity = m->fd_capacity ? 2 * m->fd_capacity : 8;
  int32_t *fds = realloc(m->fds, capacity * sizeof *fds);
  if (fds == NULL) return 0;
  m->fds = fds;
  m->fd_capacity = capacity;
  return 1;
}

/* After room_for_fd. */
static void remember_fd(struct env_marks *m, int32_t fd) {
  if (m != NULL) m->fds[m->fd_count++] = fd;
}

static void forget_fd(struct env_marks *m, int32_t fd) {
  if (m == NULL) return;
  for (size_t i = 0; i < m->fd_count; i++)
    if (m->fds[i] == fd) {
      m->fds[i] = m->fds[--m->fd_count];
      return;
    }
}

static void release_env_marks(void *arg) {
  struct env_marks *m = arg;
  for (size_t i = 0; i < m->count; i++) {
    struct flock l;
    memset(&l, 0, sizeof l);
    l.l_type = F_UNLCK;
    l.l_whence = SEEK_SET;
    l.l_start = (off_t)m->held[i].offset;
    l.l_len = 1;
    while (fcntl(m->held[i].fd, F_OFD_SETLK, &l) < 0 && errno == EINTR) {
    }
  }
  /* The marks first: a descriptor closed while a mapping keeps its description would leave them. */
  for (size_t i = 0; i < m->fd_count; i++) close(m->fds[i]);
  free(m->held);
  free(m->fds);
  free(m);
}

static int mark_lock(int fd, int64_t offset, short type, int cmd, struct flock *out) {
  struct flock l;
  memset(&l, 0, sizeof l);
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = (off_t)offset;
  l.l_len = 1;
  int r;
  do r = fcntl(fd, cmd, &l);
  while (r < 0 && errno == EINTR);
  if (out) *out = l;
  return r;
}

static int mark_args(napi_env env, napi_value *argv, int32_t *fd, int64_t *offset) {
  return arg_int32(env, argv[0], fd, "fd") && arg_int64(env, argv[1], offset, "offset");
}

/* markHold(fd, offset) -> true when taken, false when another description holds the byte. */
static napi_value js_mark_hold(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int32_t fd;
  int64_t offset;
  if (!mark_args(env, argv, &fd, &offset)) return NULL;
  struct env_marks *m = marks_of(env, info);
  /* Room first: a mark taken must be one this environment's teardown releases. */
  if (m != NULL && m->count == m->capacity) {
    size_t capacity = m->capacity ? 2 * m->capacity : 8;
    struct held_mark *held = realloc(m->held, capacity * sizeof *held);
    if (held == NULL) {
      throw_errno(env, ENOMEM, "markHold", NULL);
      return NULL;
    }
    m->held = held;
    m->capacity = capacity;
  }
  napi_value result;
  if (mark_lock(fd, offset, F_WRLCK, F_OFD_SETLK, NULL) < 0) {
    if (errno == EAGAIN || errno == EACCES) {
      napi_get_boolean(env, false, &result);
      return result;
    }
    throw_errno(env, errno, "fcntl(F_OFD_SETLK)", NULL);
    return NULL;
  }
  if (m != NULL) {
    forget_marks(m, fd, offset); /* taken again: one entry */
    m->held[m->count].fd = fd;
    m->held[m->count].offset = offset;
    m->count++;
  }
  napi_get_boolean(env, true, &result);
  return result;
}

/* markRelease(fd, offset) */
static napi_value js_mark_release(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int32_t fd;
  int64_t offset;
  if (!mark_args(env, argv, &fd, &offset)) return NULL;
  forget_marks(marks_of(env, info), fd, offset);
  if (mark_lock(fd, offset, F_UNLCK, F_OFD_SETLK, NULL) < 0) {
    throw_errno(env, errno, "fcntl(F_OFD_SETLK)", NULL);
    return NULL;
  }
  return undefined(env);
}

/* markHeld(fd, offset) -> true when a description other than fd's holds the byte. */
static napi_value js_mark_held(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int32_t fd;
  int64_t offset;
  if (!mark_args(env, argv, &fd, &offset)) return NULL;
  struct flock l;
  if (mark_lock(fd, offset, F_WRLCK, F_OFD_GETLK, &l) < 0) {
    throw_errno(env, errno, "fcntl(F_OFD_GETLK)", NULL);
    return NULL;
  }
  napi_value result;
  napi_get_boolean(env, l.l_type != F_UNLCK, &result);
  return result;
}

/* ---------- execve ---------- */

static char **string_array(napi_env env, napi_value array, const char *what) {
  bool is_array = false;
  napi_is_array(env, array, &is_array);
  if (!is_array) {
    throw_type(env, "execve argv/envp must be arrays of strings");
    return NULL;
  }
  uint32_t n;
  napi_get_array_length(env, array, &n);
  char **out = calloc((size_t)n + 1, sizeof *out);
  if (!out) {
    throw_errno(env, ENOMEM, "execve", NULL);
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    /* An element can be a getter, and a getter can throw: then item is
       unset and the exception is pending, which is the error to report. */
    if (napi_get_element(env, array, i, &item) != napi_ok) {
      throw_type(env, what);
      goto fail;
    }
    size_t len;
    if (napi_get_value_string_utf8(env, item, NULL, 0, &len) != napi_ok) {
      throw_type(env, what);
      goto fail;
    }
    out[i] = malloc(len + 1);
    if (!out[i]) {
      throw_errno(env, ENOMEM, "execve", NULL);
      goto fail;
    }
    napi_get_value_string_utf8(env, item, out[i], len + 1, &len);
    /* A C string ends at its first NUL: the next program would get the
       entry cut short there, a different argument or variable. */
    if (strlen(out[i]) != len) {
      throw_type(env, "execve argv/envp entries must not contain NUL");
      goto fail;
    }
  }
  return out;
fail:
  for (uint32_t i = 0; i < n; i++) free(out[i]);
  free(out);
  return NULL;
}

static void free_strings(char **a) {
  if (!a) return;
  for (char **p = a; *p; p++) free(*p);
  free(a);
}

extern char **environ;

/* This process's environment (environ, which Node's process.env writes
   through to on the main thread) with `set` ("NAME=value" strings) put in:
   each replaces the variable of its name, or is added. Built in C because
   enumerating process.env from JavaScript costs ~0.15 ms of a handover. */
static char **environ_with(napi_env env, napi_value set) {
  char **extra = string_array(env, set, "environment entries must be strings");
  if (!extra) return NULL;
  size_t n = 0, k = 0;
  while (environ[n]) n++;
  while (extra[k]) k++;
  char **out = calloc(n + k + 1, sizeof *out);
  if (!out) {
    free_strings(extra);
    throw_errno(env, ENOMEM, "execve", NULL);
    return NULL;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    /* An entry is replaced by a `set` entry of exactly its name (up to '='; an entry without
       '=' has no name any set entry can match, and is kept as it is). */
    const char *eq = strchr(environ[i], '=');
    int replaced = 0;
    for (size_t j = 0; eq && j < k && !replaced; j++) replaced = strncmp(environ[i], extra[j], (size_t)(eq - environ[i]) + 1) == 0;
    if (!replaced && !(out[m++] = strdup(environ[i]))) goto fail;
  }
  for (size_t j = 0; j < k; j++) out[m++] = extra[j], extra[j] = NULL;
  free(extra);
  return out;
fail:
  free_strings(out);
  for (size_t j = 0; j < k; j++) free(extra[j]);
  free(extra);
  throw_errno(env, ENOMEM, "execve", NULL);
  return NULL;
}


/* ---------- the old image, torn down while the next program starts ----------
 *
 * execve frees the old image before the new one runs: every page of the old
 * program's memory is given back, one at a time, inside the system call.
 * For a Node program that is 40-60 MB of heap, code and stacks: 3-5 ms from
 * exec() to the next program's first instruction, measured here, where a
 * small C program's execve takes 0.7 ms (and a C program that has touched
 * 50 MB, 5-9 ms).
 *
 * The image is freed by whoever drops the last reference to it (mmput), so
 * a process that shares it, made with clone(CLONE_VM) as vfork makes one,
 * turns execve's teardown into a reference count going down. That process,
 * the keeper, waits on a pipe whose write end is close-on-exec: execve
 * closes it after it has switched to the new image, the keeper's read sees
 * end of file, and the keeper exits, freeing the old image while the next
 * program starts — on another CPU when there is one free. (Kernels have
 * discussed an asynchronous exit_mmap for the same cost; process_mrelease
 * does it for killed processes.)
 *
 * The keeper is a grandchild: its parent, made for this alone, exits at
 * once, so the keeper is an orphan, for the nearest subreaper above us, or
 * else init, to reap; a child of ours would stay a zombie of the next
 * program, which knows nothing of it. An orphan is reaped only where that
 * reaper reaps what it did not start: a machine's init does, and so do the
 * subreapers made for it (systemd --user), but a container's pid 1 is
 * whatever the container runs (npm, a Node program), which often does not,
 * and each exec would leave it a zombie for good. So by default
 * (KEEPER_WHERE_REAPED) a keeper is made only in the initial pid namespace;
 * a program that knows its container's pid 1 reaps (tini, docker --init,
 * dumb-init) asks for one anyway (KEEPER_ALWAYS). Never when we are
 * that reaper ourselves (pid 1 of a namespace, a subreaper), or when
 * anything of it cannot be set up: then execve tears the image down itself.
 *
 * What the keeper holds of ours: the image and its mappings — a mapped
 * file stays open (and so does a flock taken on the descriptor it was
 * mapped from: the region layer takes its locks on descriptors it never
 * maps) until the keeper has freed them. Not our descriptors: it shares
 * our table until it unshares it, all before execve is called. The kernel
 * copies at least the first 64 slots of a table it unshares (close_range
 * CLOSE_RANGE_UNSHARE drops only the slots past those and past the pipe's
 * read end), and the keeper closes each copy but the read end: a file
 * system with a flush operation (NFS, FUSE, CIFS) runs it for each such
 * file of ours, before execve (tmpfs, ext4, sockets and pipes have none).
 * It runs in our image, on a stack of its own but on the
 * thread-local storage of the thread that made it: it makes only raw
 * system calls (errno is thread-local, and ours). Signals are blocked in
 * it (all that can be: SIGKILL and SIGSTOP cannot, and glibc keeps two of
 * its own open, which it ignores from other processes). */

/* Linux 5.9's close_range, missing from the headers of older C libraries (glibc before 2.33):
   the same number on x86-64 and aarch64. An older kernel answers ENOSYS: no keeper there. */
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
/* /proc/self/ns/pid of the initial pid namespace (include/linux/proc_ns.h, PROC_PID_INIT_INO). */
#define PID_NS_INIT_INO 0xEFFFFFFCUL

/* execve's teardown argument. */
#define TEARDOWN_INLINE 0
#define KEEPER_WHERE_REAPED 1
#define KEEPER_ALWAYS 2

#if defined(__x86_64__) || defined(__aarch64__)
#define KEEPER_SUPPORTED 1

/* A system call that leaves errno alone: -errno on failure. */
static long raw_syscall4(long number, long a, long b, long c, long d) {
#if defined(__x86_64__)
  long ret;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
  return ret;
#else
  register long x8 __asm__("x8") = number;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
  return x0;
#endif
}
#define raw_syscall3(number, a, b, c) raw_syscall4(number, a, b, c, 0)
#else
#define KEEPER_SUPPORTED 0
#endif

#define KEEPER_STACK_BYTES (64 * 1024)
/* How long exec() waits for the keeper to let go of our descriptors (it has a CPU within microseconds). */
#define KEEPER_READY_MS 100
/* How long a failed execve waits for the keeper to exit before it gives up its stacks for lost. */
#define KEEPER_EXIT_MS 1000

/* At the start of a mapping of one page and two stacks (the keeper's parent's, then the keeper's). */
struct keeper {
  int read_fd;
  int write_fd;
  /* 1 once the keeper holds no descriptor of ours but read_fd; -1 when it could not let them go. */
  int ready;
  /* The keeper's pid, or -1 when its parent could not make it. */
  int pid;
  /* 1 while the keeper lives: the kernel zeroes it and wakes its waiters as the keeper lets go of
     the image (CLONE_CHILD_CLEARTID, as pthread_join waits for a thread). */
  int alive;
  char *keeper_stack_top;
};

#if KEEPER_SUPPORTED
static int keeper_main(void *arg) {
  struct keeper *k = arg;
  raw_syscall3(SYS_prctl, PR_SET_NAME, (long)"pmpool-keeper", 0);
  /* Our table, shared until here: a table of its own (holding copies of at least our first 64
     slots, and of read_fd), then every copy but read_fd closed. On a kernel before 5.9, ENOSYS:
     no keeper. */
  long closed = raw_syscall3(SYS_close_range, (long)k->read_fd + 1, (long)~0U, CLOSE_RANGE_UNSHARE);
  if (closed == 0 && k->read_fd > 0) closed = raw_syscall3(SYS_close_range, 0, (long)k->read_fd - 1, 0);
  /* The write end may sit below the read end (another thread freed a lower number during pipe2):
     closed above then; above it, it was never copied or is closed here. */
  /* The ordinary policy (not a real-time one a program may run at), at the program's own nice:
     the teardown takes the CPU share the old program's exit would have. Not lower: at nice 19,
     a machine kept busy (four spinning processes on two CPUs, ten 1 GB programs exec'd in turn)
     held every old image at once, for up to 37 s and 8 GB; at SCHED_IDLE it would be longer. */
  struct sched_param ordinary = {0};
  raw_syscall3(SYS_sched_setscheduler, 0, SCHED_OTHER, (long)&ordinary);
  __atomic_store_n(&k->ready, closed == 0 ? 1 : -1, __ATOMIC_RELEASE);
  raw_syscall3(SYS_futex, (long)&k->ready, FUTEX_WAKE, 1);
  if (closed != 0) return 0;
  char byte;
  long r;
  do r = raw_syscall3(SYS_read, k->read_fd, (long)&byte, 1);
  while (r > 0 || r == -EINTR);
  return 0; /* glibc's clone calls exit: here the old image goes, if execve has left it to us */
}

static int keeper_parent_main(void *arg) {
  struct keeper *k = arg;
  /* glibc's clone sets errno only when it fails; our thread sits in wait4 (raw) meanwhile. */
  long pid = clone(keeper_main, k->keeper_stack_top, CLONE_VM | CLONE_FILES | CLONE_CHILD_CLEARTID | SIGCHLD, k, NULL, NULL, &k->alive);
  __atomic_store_n(&k->pid, pid > 0 ? (int)pid : -1, __ATOMIC_RELEASE);
  if (pid <= 0) __atomic_store_n(&k->alive, 0, __ATOMIC_RELEASE);
  return 0;
}
#endif

static void keeper_area_free(struct keeper *k) {
  munmap(k, (size_t)sysconf(_SC_PAGESIZE) + 2 * KEEPER_STACK_BYTES);
}

/* Waits (on a futex) while *word == value, at most `ms` milliseconds; true when it changed. */
static int wait_while(int *word, int value, long ms) {
  struct timespec now, deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += ms / 1000;
  deadline.tv_nsec += (ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
  while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == value) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    long left_ns = (deadline.tv_sec - now.tv_sec) * 1000000000L + (deadline.tv_nsec - now.tv_nsec);
    if (left_ns <= 0) return 0;
    struct timespec left = {left_ns / 1000000000L, left_ns % 1000000000L};
    syscall(SYS_futex, word, FUTEX_WAIT, value, &left, NULL, 0);
  }
  return 1;
}

/* After a failed execve: the keeper is told to go (end of file), and its stacks are unmapped once it
   has let go of the image. One that does not in time keeps them (lost, not reused). */
static void keeper_dismiss(struct keeper *k) {
  close(k->write_fd);
  if (wait_while(&k->alive, 1, KEEPER_EXIT_MS)) keeper_area_free(k);
}

/* A keeper that did not come up (ready still 0 at the deadline): killed first, wherever it is stuck,
   before our end of its pipe is closed — a keeper that still shares our table could otherwise copy
   whatever another thread opens under the freed number, and read from it. Not one that said it
   failed (ready -1): that one is exiting by itself, and its pid may soon be another process's. */
static void keeper_abandon(struct keeper *k) {
  if (__atomic_load_n(&k->ready, __ATOMIC_ACQUIRE) == 0) kill(k->pid, SIGKILL);
  close(k->read_fd);
  keeper_dismiss(k);
}

/* This process is in the initial pid namespace, whose init reaps orphans. */
static int in_initial_pid_namespace(void) {
  struct stat st;
  return stat("/proc/self/ns/pid", &st) == 0 && (unsigned long)st.st_ino == PID_NS_INIT_INO;
}

/* Starts a keeper of this image (see above) as `mode` asks; NULL when there is none. */
static struct keeper *keeper_start(int mode) {
#if KEEPER_SUPPORTED
  if (mode != KEEPER_WHERE_REAPED && mode != KEEPER_ALWAYS) return NULL;
  int subreaper = 1; /* a prctl that fails (seccomp) counts as "yes": no keeper then */
  if (getpid() == 1 || prctl(PR_GET_CHILD_SUBREAPER, &subreaper) != 0 || subreaper) return NULL;
  if (mode == KEEPER_WHERE_REAPED && !in_initial_pid_namespace()) return NULL;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  struct keeper *k = mmap(NULL, page + 2 * KEEPER_STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (k == MAP_FAILED) return NULL;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    keeper_area_free(k);
    return NULL;
  }
  k->read_fd = fds[0];
  k->write_fd = fds[1];
  k->ready = 0;
  k->pid = 0;
  k->alive = 1;
  k->keeper_stack_top = (char *)k + page + 2 * KEEPER_STACK_BYTES;
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  /* Exit signal 0: no SIGCHLD reaches Node's handler; reaped with __WCLONE. CLONE_FILES: its exit
     drops a reference to our table, where a copy of it would close (and flush) every file. */
  pid_t parent = clone(keeper_parent_main, (char *)k + page + KEEPER_STACK_BYTES, CLONE_VM | CLONE_FILES, k);
  pthread_sigmask(SIG_SETMASK, &saved, NULL);
  if (parent <= 0) {
    close(fds[0]);
    close(fds[1]);
    keeper_area_free(k);
    return NULL;
  }
  /* Raw: the parent runs on our errno too. Any failure but EINTR leaves it unreaped, perhaps still
     on its stack: the area is then lost, never unmapped under it. */
  long reaped;
  do reaped = raw_syscall4(SYS_wait4, parent, 0, __WCLONE, 0);
  while (reaped == -EINTR);
  int keeper_made = __atomic_load_n(&k->pid, __ATOMIC_ACQUIRE) > 0;
  if (reaped != parent) {
    /* Its stack may still be in use: the area is lost, never unmapped. */
    if (keeper_made) kill(k->pid, SIGKILL);
    close(fds[0]);
    close(fds[1]);
    return NULL;
  }
  if (!keeper_made) {
    close(fds[0]);
    close(fds[1]);
    keeper_area_free(k);
    return NULL;
  }
  /* The read end stays open here until the keeper has a table of its own: it shares ours until
     then, and would find its read end closed. */
  if (!wait_while(&k->ready, 0, KEEPER_READY_MS) || __atomic_load_n(&k->ready, __ATOMIC_ACQUIRE) != 1) {
    keeper_abandon(k);
    return NULL;
  }
  close(fds[0]);
  return k;
#else
  (void)mode;
  return NULL;
#endif
}

/* claimExec(claim: boolean) -> boolean
 * One thread at a time may replace the program: the claim is the task id of
 * the thread that holds it, process-wide (this library is loaded once per
 * process, whatever the number of threads). exec() claims before it writes
 * its blob and hands the claim back if execve fails. Without it, two
 * threads exec'ing at once would each write a blob; the first execve ends
 * the other thread (de_thread), whose blob no program would read, and the
 * two would clear and restore the stdio flags under each other. A claim
 * whose thread is gone (a worker terminated between its claim and its
 * execve) is taken over. claim false hands back this thread's claim. */
static int exec_claim_tid;

static napi_value js_claim_exec(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int claim;
  if (!arg_bool(env, argv[0], &claim, "claim")) return NULL;
  int self = (int)syscall(SYS_gettid);
  bool held = false;
  if (!claim) {
    int expected = self;
    __atomic_compare_exchange_n(&exec_claim_tid, &expected, 0, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
  } else {
    for (;;) {
      int holder = 0;
      if (__atomic_compare_exchange_n(&exec_claim_tid, &holder, self, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) || holder == self) {
        held = true;
        break;
      }
      /* tgkill with signal 0 asks whether that task of this process still exists. */
      if (syscall(SYS_tgkill, getpid(), holder, 0) == 0 || errno != ESRCH) break;
      __atomic_compare_exchange_n(&exec_claim_tid, &holder, 0, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
  }
  napi_value out;
  napi_get_boolean(env, held, &out);
  return out;
}

/* execve(file, argv, envp, set, teardown): replaces the process image;
 * returns only by throwing. envp null means this process's environment with
 * `set` put in (environ_with); an array is the environment as it stands.
 * teardown: TEARDOWN_INLINE, KEEPER_WHERE_REAPED or KEEPER_ALWAYS (above):
 * whether a keeper frees the old image while the next program starts. The
 * caller flushes stdio first (Node writes pipes asynchronously). */
static napi_value js_execve(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int32_t teardown = TEARDOWN_INLINE;
  napi_get_value_int32(env, argv[4], &teardown); /* not a number (undefined from an older caller): inline */
  char file[PATH_BYTES];
  if (!arg_string(env, argv[0], file, sizeof file, "file")) return NULL;
  char **args = string_array(env, argv[1], "argv entries must be strings");
  if (!args) return NULL;
  napi_valuetype envp_type;
  napi_typeof(env, argv[2], &envp_type);
  char **envp = envp_type == napi_null ? environ_with(env, argv[3]) : string_array(env, argv[2], "envp entries must be strings");
  if (!envp) {
    free_strings(args);
    return NULL;
  }
  /* libuv marks the stdio fds close-on-exec; the next program must inherit
     them (Node 22's process.execve clears the flag the same way). And it
     makes a pipe or socket it has a stream on non-blocking: O_NONBLOCK is
     on the open file, which the next program shares, and one that is not
     Node expects blocking stdio (a write to a full pipe fails with EAGAIN).
     Node puts the flag back as it exits (ResetStdio), which execve skips;
     libuv's spawn clears it in the child the same way. A Node next program
     sets it again for its own streams. Both are put back if execve fails. */
  int saved_fd_flags[3], saved_fl_flags[3];
  for (int fd = 0; fd < 3; fd++) {
    saved_fd_flags[fd] = fcntl(fd, F_GETFD);
    if (saved_fd_flags[fd] >= 0 && (saved_fd_flags[fd] & FD_CLOEXEC))
      fcntl(fd, F_SETFD, saved_fd_flags[fd] & ~FD_CLOEXEC);
    saved_fl_flags[fd] = fcntl(fd, F_GETFL);
    if (saved_fl_flags[fd] >= 0 && (saved_fl_flags[fd] & O_NONBLOCK))
      fcntl(fd, F_SETFL, saved_fl_flags[fd] & ~O_NONBLOCK);
  }
  /* A profiled program (node --cpu-prof) is sent SIGPROF by V8's sampler
     thread. One sent while execve runs stays pending into the new image,
     which has no handler yet: its default action kills the program the
     handover was for ("Profiling timer expired"). An ignored signal is
     discarded, not queued. Node resets an inherited SIG_IGN to the default
     as it starts (src/node.cc, ResetSignalHandlers), so the next Node's own
     profiler works; a next program that is not Node inherits SIGPROF
     ignored, as it would from any parent that ignores it. Put back if
     execve fails. */
  struct sigaction ignore, saved_prof;
  memset(&ignore, 0, sizeof ignore);
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  int prof_saved = sigaction(SIGPROF, &ignore, &saved_prof) == 0;
  /* A program that put its terminal in raw mode (process.stdin.setRawMode)
     has it put back by Node as it exits (ResetStdio, uv_tty_reset_mode),
     which execve skips: the next program — a shell, an editor — would start
     with no echo and no line editing. libuv's reset puts back the mode its
     first change found (async-signal-safe; nothing when it changed none).
     The mode in force is put back if execve fails. */
  struct termios saved_tty[3];
  bool tty_saved[3];
  for (int fd = 0; fd < 3; fd++) tty_saved[fd] = isatty(fd) && tcgetattr(fd, &saved_tty[fd]) == 0;
  uv_tty_reset_mode();
  struct keeper *keeper = keeper_start(teardown);
  /* Node ignores SIGPIPE and SIGXFSZ as it starts. execve resets a handled
     signal to its default but keeps an ignored one ignored, so a next
     program that is not Node would inherit both: the writer of a pipeline
     whose reader is gone gets EPIPE (an error message, or a loop for ever
     when it does not check) instead of being ended quietly, a write past
     RLIMIT_FSIZE fails with EFBIG instead of stopping the program. libuv's
     spawn resets them in the child. Only an ignored one is touched, and as late as can be: from here
     on, a write to a closed pipe by another thread ends the process as it
     would end the next program. Put back if execve fails. */
  static const int reset_signals[] = {SIGPIPE, SIGXFSZ};
  struct sigaction saved_reset[2];
  bool reset_done[2];
  struct sigaction default_action;
  memset(&default_action, 0, sizeof default_action);
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  for (int i = 0; i < 2; i++)
    reset_done[i] = sigaction(reset_signals[i], NULL, &saved_reset[i]) == 0 && !(saved_reset[i].sa_flags & SA_SIGINFO) &&
                    saved_reset[i].sa_handler == SIG_IGN && sigaction(reset_signals[i], &default_action, NULL) == 0;
  execve(file, args, envp);
  int err = errno;
  for (int i = 0; i < 2; i++)
    if (reset_done[i]) sigaction(reset_signals[i], &saved_reset[i], NULL);
  if (keeper) keeper_dismiss(keeper);
  for (int fd = 0; fd < 3; fd++)
    if (tty_saved[fd]) tcsetattr(fd, TCSANOW, &saved_tty[fd]);
  if (prof_saved) sigaction(SIGPROF, &saved_prof, NULL);
  for (int fd = 0; fd < 3; fd++) {
    if (saved_fd_flags[fd] >= 0) fcntl(fd, F_SETFD, saved_fd_flags[fd]);
    if (saved_fl_flags[fd] >= 0) fcntl(fd, F_SETFL, saved_fl_flags[fd]);
  }
  free_strings(args);
  free_strings(envp);
  throw_errno(env, err, "execve", file);
  return NULL;
}

/* ---------- the code cache's checksum ---------- */

/* checksum64(bytes: Uint8Array) -> 16 hex digits
 * Not a syscall: the one computation a cold start needs before any
 * JavaScript of the bundle is compiled — the bundle loader checks the bundle
 * and its V8 code cache with it (src/entry/checksum.ts has the definition
 * and a reference implementation). In JavaScript it would run through the
 * interpreter (~3 ms for 0.5 MB); in WebAssembly, compiling and copying cost
 * ~1 ms; here it is a tenth of that, and the addon is loaded anyway.
 * Four lanes: lane j starts at (len ^ SEED) + j; 8-byte little-endian word
 * i (the last padded with zeros) goes to lane i % 4 as
 * h = rotl(h ^ w, 23) * MULTIPLIER; then h = lane 0, and lanes 1, 2, 3 are
 * folded in the same way. Four independent chains keep the multiplier busy:
 * ~4x the speed of one (the cold start checksums 0.5 MB). */
#define CHECKSUM_SEED UINT64_C(0x9e3779b97f4a7c15)
#define CHECKSUM_MULTIPLIER UINT64_C(0xff51afd7ed558ccd)
#define CHECKSUM_STEP(h, w) ((((h) ^ (w)) << 23 | ((h) ^ (w)) >> 41) * CHECKSUM_MULTIPLIER)

static napi_value js_checksum64(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  bool is_typed = false;
  napi_is_typedarray(env, argv[0], &is_typed);
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (!is_typed || napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    throw_type(env, "checksum64 needs a Uint8Array");
    return NULL;
  }
  const uint8_t *bytes = data;
  uint64_t lane[4];
  for (int j = 0; j < 4; j++) lane[j] = ((uint64_t)length ^ CHECKSUM_SEED) + (uint64_t)j;
  size_t i = 0;
  for (; i + 32 <= length; i += 32) {
    uint64_t w[4];
    memcpy(w, bytes + i, 32); /* little-endian hosts only, like the region ABI */
    for (int j = 0; j < 4; j++) lane[j] = CHECKSUM_STEP(lane[j], w[j]);
  }
  for (int j = 0; i < length; i += 8, j++) {
    uint64_t w = 0;
    memcpy(&w, bytes + i, length - i < 8 ? length - i : 8);
    lane[j] = CHECKSUM_STEP(lane[j], w);
  }
  uint64_t h = lane[0];
  for (int j = 1; j < 4; j++) h = CHECKSUM_STEP(h, lane[j]);
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  napi_value out;
  napi_create_string_latin1(env, hex, 16, &out);
  return out;
}

/* ---------- module ---------- */

static napi_value init(napi_env env, napi_value exports) {
  /* Without room for the list (or a hook to release it), marks are taken as before: they go
     with the descriptor alone; and descriptors stay open until this program closes them. */
  struct env_marks *marks = calloc(1, sizeof *marks);
  if (marks != NULL && napi_add_env_cleanup_hook(env, release_env_marks, marks) != napi_ok) {
    free(marks);
    marks = NULL;
  }
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, marks},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, marks},
      {"fstat", NULL, js_fstat, NULL, NULL, NULL, napi_default, NULL},
      {"ftruncate", NULL, js_ftruncate, NULL, NULL, NULL, napi_default, NULL},
      {"fallocate", NULL, js_fallocate, NULL, NULL, NULL, napi_default, NULL},
      {"flock", NULL, js_flock, NULL, NULL, NULL, napi_default, NULL},
      {"markHold", NULL, js_mark_hold, NULL, NULL, NULL, napi_default, marks},
      {"markRelease", NULL, js_mark_release, NULL, NULL, NULL, napi_default, marks},
      {"markHeld", NULL, js_mark_held, NULL, NULL, NULL, napi_default, NULL},
      {"mmap", NULL, js_mmap, NULL, NULL, NULL, napi_default, NULL},
      {"loadFile", NULL, js_load_file, NULL, NULL, NULL, napi_default, NULL},
      {"readFile", NULL, js_read_file, NULL, NULL, NULL, napi_default, NULL},
      {"writeFile", NULL, js_write_file, NULL, NULL, NULL, napi_default, NULL},
      {"unlink", NULL, js_unlink, NULL, NULL, NULL, napi_default, NULL},
      {"gettid", NULL, js_gettid, NULL, NULL, NULL, napi_default, NULL},
      {"munmap", NULL, js_munmap, NULL, NULL, NULL, napi_default, NULL},
      {"msync", NULL, js_msync, NULL, NULL, NULL, napi_default, NULL},
      {"madvise", NULL, js_madvise, NULL, NULL, NULL, napi_default, NULL},
      {"mappings", NULL, js_mappings, NULL, NULL, NULL, napi_default, NULL},
      {"preferHugePages", NULL, js_prefer_huge_pages, NULL, NULL, NULL, napi_default, NULL},
      {"hugePageWork", NULL, js_huge_page_work, NULL, NULL, NULL, napi_default, NULL},
      {"claimExec", NULL, js_claim_exec, NULL, NULL, NULL, napi_default, NULL},
      {"execve", NULL, js_execve, NULL, NULL, NULL, napi_default, NULL},
      {"checksum64", NULL, js_checksum64, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
