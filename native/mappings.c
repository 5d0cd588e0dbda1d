/*
 * Mappings. Each window of a region is one mmap and one external
 * ArrayBuffer. V8 aborts if two ArrayBuffers share a backing address, so a
 * mapping is handed to JS exactly once; JS hands out views of it. The
 * finalizer unmaps a window that was not unmapped explicitly. A small list of
 * live mappings lets munmap/msync/madvise find a mapping from its
 * ArrayBuffer's data pointer and refuse anything else.
 *
 * Huge pages in the background. A map's table and segments are read at
 * random, and on a tmpfs mounted without huge= (/dev/shm, as distributions
 * mount it) every page is 4 KiB: a million-entry map spans ~40,000 pages,
 * far past the TLB, and most gets pay a page walk on top of the cache miss
 * (in a virtual machine, a two-level walk). MADV_COLLAPSE (Linux 6.1) asks
 * the kernel to move a 2 MiB extent of a file mapping into one huge page —
 * for tmpfs whatever its huge= option, short of the "deny" override — which
 * stays with the file: the next program that maps it, aligned, gets it
 * PMD-mapped too. A collapse copies the extent and takes milliseconds, so
 * preferHugePages() queues the extents to a thread of the addon's own and
 * returns: it changes no byte (the kernel locks and copies the pages while
 * the mapping stays usable), only which pages hold them. Windows of 2 MiB
 * and more are mapped at an address congruent to their file offset modulo
 * 2 MiB when asked (tmpfs), or no extent of the file could be PMD-mapped.
 *
 * Everything here is locked by mappings_lock: Node's worker threads load the
 * addon too, and the collapser runs beside them.
 */
#include "addon.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Linux 5.14's MADV_POPULATE_WRITE and 6.1's MADV_COLLAPSE, missing from the
   headers of older C libraries (glibc before 2.35 / 2.37, musl before
   1.2.3): without them the addon would refuse the advice even on a kernel
   that has it. An older kernel answers EINVAL, which callers take as "not
   here". */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
/* A PMD's span on x86-64 and arm64 with 4 KiB pages: the unit of a collapse. */
#define HUGE_EXTENT ((size_t)2 << 20)

typedef struct mapping {
  void *addr;
  size_t length;
  int unmapped;
  int wrapping; /* inside napi_create_external_arraybuffer (wrap_mapping) */
  int requests;   /* huge-page requests that name it, queued or running: it is freed after the last */
  int finalized;  /* its ArrayBuffer is gone; the last request frees it */
  int collapsing; /* an extent of it is being collapsed: an unmap waits for that one */
  int unmapping;  /* an unmap waits: no further extent of it is taken */
  struct mapping *next;
} mapping;

static pthread_mutex_t mappings_lock = PTHREAD_MUTEX_INITIALIZER;
static mapping *live_mappings = NULL;
static int64_t live_count = 0;
static int64_t live_bytes = 0;

static mapping *find_mapping(void *addr) {
  pthread_mutex_lock(&mappings_lock);
  mapping *found = NULL;
  for (mapping *m = live_mappings; m; m = m->next)
    if (m->addr == addr && !m->unmapped) {
      found = m;
      break;
    }
  pthread_mutex_unlock(&mappings_lock);
  return found;
}

static void forget_mapping(mapping *target) {
  pthread_mutex_lock(&mappings_lock);
  for (mapping **p = &live_mappings; *p; p = &(*p)->next)
    if (*p == target) {
      *p = target->next;
      break;
    }
  pthread_mutex_unlock(&mappings_lock);
}

/* Signalled when a collapse of an extent ends. */
static pthread_cond_t extent_done = PTHREAD_COND_INITIALIZER;

static void unmap_now(mapping *m) {
  pthread_mutex_lock(&mappings_lock);
  /* Not under a collapse: the range could be mapped again by anyone (V8's heap) meanwhile. */
  m->unmapping = 1;
  while (m->collapsing) pthread_cond_wait(&extent_done, &mappings_lock);
  if (!m->unmapped) {
    munmap(m->addr, m->length);
    m->unmapped = 1;
    live_count--;
    live_bytes -= (int64_t)m->length;
  }
  pthread_mutex_unlock(&mappings_lock);
}

static void finalize_mapping(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping *m = hint;
  /* Node calls the finalizer at once when it refuses to create the buffer
     (over its size limit); wrap_mapping undoes the mapping then, once. */
  if (m->wrapping) return;
  unmap_now(m);
  forget_mapping(m);
  pthread_mutex_lock(&mappings_lock);
  int keep = m->requests > 0;
  m->finalized = 1;
  pthread_mutex_unlock(&mappings_lock);
  if (!keep) free(m);
}

/* An ArrayBuffer over a fresh mapping, counted in mappings() until it is
   unmapped (munmap(), or the finalizer once the buffer is collected). On
   failure the mapping is undone and a JavaScript error is pending. */
napi_value wrap_mapping(napi_env env, void *addr, size_t length, const char *syscall) {
  mapping *m = calloc(1, sizeof *m);
  if (!m) {
    munmap(addr, length);
    throw_errno(env, ENOMEM, syscall, NULL);
    return NULL;
  }
  m->addr = addr;
  m->length = length;
  napi_value buffer;
  m->wrapping = 1;
  napi_status s = napi_create_external_arraybuffer(env, addr, length, finalize_mapping, m, &buffer);
  m->wrapping = 0;
  if (s != napi_ok) {
    munmap(addr, length);
    free(m);
    throw_errno(env, ENOMEM, "mmap (external ArrayBuffer refused)", NULL);
    return NULL;
  }
  pthread_mutex_lock(&mappings_lock);
  m->next = live_mappings;
  live_mappings = m;
  live_count++;
  live_bytes += (int64_t)length;
  pthread_mutex_unlock(&mappings_lock);
  return buffer;
}

/* A shared mapping of [offset, +length) of fd at an address congruent to
   offset modulo HUGE_EXTENT: a reservation one extent longer, the mapping
   placed in it, the rest given back. */
static void *mmap_extent_aligned(int fd, int64_t offset, size_t length, int prot) {
  /* The kernel maps whole pages: the placement and the tail given back are reckoned in them. */
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  length = (length + page - 1) & ~(page - 1);
  size_t span = length + HUGE_EXTENT;
  char *reserved = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserved == MAP_FAILED) return MAP_FAILED;
  uintptr_t phase = (uintptr_t)offset & (HUGE_EXTENT - 1);
  uintptr_t at = (((uintptr_t)reserved + HUGE_EXTENT - 1) & ~(uintptr_t)(HUGE_EXTENT - 1)) + phase;
  if (at - HUGE_EXTENT >= (uintptr_t)reserved) at -= HUGE_EXTENT;
  void *addr = mmap((void *)at, length, prot, MAP_SHARED | MAP_FIXED, fd, (off_t)offset);
  if (addr == MAP_FAILED) {
    int e = errno;
    munmap(reserved, span);
    errno = e;
    return MAP_FAILED;
  }
  if (at > (uintptr_t)reserved) munmap(reserved, at - (uintptr_t)reserved);
  uintptr_t end = at + length, reserved_end = (uintptr_t)reserved + span;
  if (reserved_end > end) munmap((void *)end, reserved_end - end);
  return addr;
}

/* mmap(fd, offset, length, writable, extentAligned) -> ArrayBuffer */
napi_value js_mmap(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int32_t fd;
  int64_t offset, length;
  int writable, extent_aligned;
  if (!arg_int32(env, argv[0], &fd, "fd") || !arg_int64(env, argv[1], &offset, "offset") ||
      !arg_int64(env, argv[2], &length, "length") || !arg_bool(env, argv[3], &writable, "writable") ||
      !arg_bool(env, argv[4], &extent_aligned, "extentAligned"))
    return NULL;
  if (length == 0 || (uint64_t)length > MAX_WINDOW_BYTES) {
    throw_errno(env, EINVAL, "mmap (window length must be 1 byte to 4 GiB)", NULL);
    return NULL;
  }
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void *addr = extent_aligned && (size_t)length >= HUGE_EXTENT
                   ? mmap_extent_aligned(fd, offset, (size_t)length, prot)
                   : mmap(NULL, (size_t)length, prot, MAP_SHARED, fd, (off_t)offset);
  if (addr == MAP_FAILED) {
    throw_errno(env, errno, "mmap", NULL);
    return NULL;
  }
  return wrap_mapping(env, addr, (size_t)length, "mmap");
}

static mapping *mapping_of(napi_env env, napi_value buffer, const char *syscall) {
  bool is_ab = false;
  napi_is_arraybuffer(env, buffer, &is_ab);
  if (!is_ab) {
    throw_type(env, "expected a mapped ArrayBuffer");
    return NULL;
  }
  void *data = NULL;
  size_t len = 0;
  napi_get_arraybuffer_info(env, buffer, &data, &len);
  mapping *m = data ? find_mapping(data) : NULL;
  if (!m) {
    throw_errno(env, EINVAL, syscall, "(not a live mapping)");
    return NULL;
  }
  return m;
}

/* munmap(buffer): unmaps now and detaches the ArrayBuffer so that any later
 * access sees a zero-length buffer instead of touching unmapped memory. */
napi_value js_munmap(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  mapping *m = mapping_of(env, argv[0], "munmap");
  if (!m) return NULL;
  if (napi_detach_arraybuffer(env, argv[0]) != napi_ok) {
    throw_errno(env, EINVAL, "munmap (detach refused)", NULL);
    return NULL;
  }
  unmap_now(m);
  return undefined(env);
}

/* The page-aligned range for [offset, offset + length) of a mapping. `inward`
   keeps only whole pages inside the range — for advice that destroys
   contents (remove, dontneed), which must never reach the bytes around it;
   otherwise the range grows outward to whole pages (msync, willneed). */
static int range_in(napi_env env, mapping *m, napi_value off_v, napi_value len_v, int inward, size_t *start, size_t *len) {
  int64_t offset, length;
  if (!arg_int64(env, off_v, &offset, "offset") || !arg_int64(env, len_v, &length, "length")) return 0;
  if ((uint64_t)offset > m->length || (uint64_t)length > m->length - (uint64_t)offset) {
    throw_errno(env, EINVAL, "range outside the mapping", NULL);
    return 0;
  }
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t from = (size_t)offset, to = (size_t)offset + (size_t)length;
  if (inward) {
    from = (from + page - 1) & ~(page - 1);
    to &= ~(page - 1);
    if (to < from) to = from;
  } else {
    from &= ~(page - 1);
  }
  *start = from;
  *len = to - from;
  return 1;
}

/* msync(buffer, offset, length, synchronous) */
napi_value js_msync(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  mapping *m = mapping_of(env, argv[0], "msync");
  size_t start, len;
  if (!m || !range_in(env, m, argv[1], argv[2], 0, &start, &len)) return NULL;
  int synchronous;
  if (!arg_bool(env, argv[3], &synchronous, "synchronous")) return NULL;
  int flags = synchronous ? MS_SYNC : MS_ASYNC;
  if (len && msync((char *)m->addr + start, len, flags) < 0) {
    throw_errno(env, errno, "msync", NULL);
    return NULL;
  }
  return undefined(env);
}

/* madvise(buffer, offset, length, advice) advice: "hugepage" | "dontneed" |
 * "willneed" | "populate" | "remove" | "normal". A collapse is not among
 * them: it is preferHugePages()'s, off the JavaScript thread. */
napi_value js_madvise(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  mapping *m = mapping_of(env, argv[0], "madvise");
  char advice_name[32];
  if (!m || !arg_string(env, argv[3], advice_name, sizeof advice_name, "advice")) return NULL;
  int advice;
  if (!strcmp(advice_name, "hugepage")) advice = MADV_HUGEPAGE;
  else if (!strcmp(advice_name, "dontneed")) advice = MADV_DONTNEED;
  else if (!strcmp(advice_name, "willneed")) advice = MADV_WILLNEED;
  else if (!strcmp(advice_name, "remove")) advice = MADV_REMOVE;
  else if (!strcmp(advice_name, "normal")) advice = MADV_NORMAL;
  else if (!strcmp(advice_name, "populate")) advice = MADV_POPULATE_WRITE;
  else {
    throw_type(env, "unknown madvise advice");
    return NULL;
  }
  size_t start, len;
  int destructive = advice == MADV_DONTNEED || advice == MADV_REMOVE;
  if (!range_in(env, m, argv[1], argv[2], destructive, &start, &len)) return NULL;
  if (len && madvise((char *)m->addr + start, len, advice) < 0) {
    throw_errno(env, errno, "madvise", NULL);
    return NULL;
  }
  return undefined(env);
}

/* mappings() -> { count, bytes }: live windows, for tests and `pmpool info`. */
napi_value js_mappings(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_mutex_lock(&mappings_lock);
  int64_t count = live_count, bytes = live_bytes;
  pthread_mutex_unlock(&mappings_lock);
  napi_value obj;
  napi_create_object(env, &obj);
  set_number(env, obj, "count", count);
  set_number(env, obj, "bytes", bytes);
  return obj;
}

/* ---------- the collapser ---------- */

typedef struct huge_request {
  mapping *m;
  size_t from, to; /* extent-aligned offsets in the mapping still to collapse */
  struct huge_request *next;
} huge_request;

static huge_request *queue_head = NULL, *queue_tail = NULL;
static pthread_cond_t work_queued = PTHREAD_COND_INITIALIZER;
static int collapser_started = 0;
static int64_t extents_pending = 0, extents_collapsed = 0, extents_refused = 0;

/* Takes the next extent to collapse off the queue, dropping requests that are done or whose
   mapping is gone; NULL when there is none. Under mappings_lock. */
static char *next_extent(mapping **owner) {
  while (queue_head) {
    huge_request *r = queue_head;
    mapping *m = r->m;
    if (!m->unmapped && !m->unmapping && r->from < r->to) {
      char *at = (char *)m->addr + r->from;
      r->from += HUGE_EXTENT;
      *owner = m;
      return at;
    }
    extents_pending -= (int64_t)((r->to - r->from) / HUGE_EXTENT);
    queue_head = r->next;
    if (!queue_head) queue_tail = NULL;
    int orphan = --m->requests == 0 && m->finalized;
    free(r);
    if (orphan) free(m);
  }
  return NULL;
}

/* The collapser: one thread for the process, started by the first request and
   waiting for work for the rest of its life. Signals are blocked in it (they
   are the JavaScript thread's to handle). A process that ends or execs while
   it collapses waits for that one extent. Node starts programs with
   fork-and-exec, never a bare fork, so no child ever holds a queue without
   its thread. */
static void *collapser_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&mappings_lock);
  for (;;) {
    mapping *m;
    char *at = next_extent(&m);
    if (!at) {
      pthread_cond_wait(&work_queued, &mappings_lock);
      continue;
    }
    m->collapsing = 1;
    pthread_mutex_unlock(&mappings_lock);
    int done = madvise(at, HUGE_EXTENT, MADV_COLLAPSE) == 0;
    pthread_mutex_lock(&mappings_lock);
    m->collapsing = 0;
    pthread_cond_broadcast(&extent_done);
    extents_pending--;
    if (done) extents_collapsed++;
    else extents_refused++;
  }
  return NULL;
}

/* Under mappings_lock. 0, or the errno of a thread that could not be started. */
static int start_collapser(void) {
  if (collapser_started) return 0;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  pthread_t thread;
  int err = pthread_create(&thread, &attr, collapser_main, NULL);
  pthread_sigmask(SIG_SETMASK, &saved, NULL);
  pthread_attr_destroy(&attr);
  if (err) return err;
  pthread_setname_np(thread, "pmpool-huge");
  collapser_started = 1;
  return 0;
}

/* preferHugePages(buffer, offset, length) -> bytes queued: the whole 2 MiB
   extents (by address) inside [offset, +length) of a mapping, to be collapsed
   into huge pages in the background. A hint: an extent the kernel will not
   collapse (no page of it in memory yet, memory short, an older kernel, a
   file system without huge pages) stays as it is, and is counted in
   hugePageWork().refused. */
napi_value js_prefer_huge_pages(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  mapping *m = mapping_of(env, argv[0], "preferHugePages");
  size_t start, len;
  if (!m || !range_in(env, m, argv[1], argv[2], 1, &start, &len)) return NULL;
  uintptr_t base = (uintptr_t)m->addr;
  uintptr_t from = (base + start + HUGE_EXTENT - 1) & ~(uintptr_t)(HUGE_EXTENT - 1);
  uintptr_t to = (base + start + len) & ~(uintptr_t)(HUGE_EXTENT - 1);
  if (to <= from) return make_int64(env, 0);
  huge_request *r = calloc(1, sizeof *r);
  if (!r) {
    throw_errno(env, ENOMEM, "preferHugePages", NULL);
    return NULL;
  }
  r->m = m;
  r->from = from - base;
  r->to = to - base;
  pthread_mutex_lock(&mappings_lock);
  int err = m->unmapped || m->unmapping ? EINVAL : start_collapser();
  if (err) {
    pthread_mutex_unlock(&mappings_lock);
    free(r);
    throw_errno(env, err, "preferHugePages (pthread_create)", NULL);
    return NULL;
  }
  m->requests++;
  if (queue_tail) queue_tail->next = r;
  else queue_head = r;
  queue_tail = r;
  extents_pending += (int64_t)((to - from) / HUGE_EXTENT);
  pthread_cond_signal(&work_queued);
  pthread_mutex_unlock(&mappings_lock);
  return make_int64(env, (int64_t)(to - from));
}

/* hugePageWork() -> { pending, collapsed, refused }: extents of 2 MiB, over the process's life. */
napi_value js_huge_page_work(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_mutex_lock(&mappings_lock);
  int64_t pending = extents_pending, collapsed = extents_collapsed, refused = extents_refused;
  pthread_mutex_unlock(&mappings_lock);
  napi_value obj;
  napi_create_object(env, &obj);
  set_number(env, obj, "pending", pending);
  set_number(env, obj, "collapsed", collapsed);
  set_number(env, obj, "refused", refused);
  return obj;
}
