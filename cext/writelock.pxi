# writelock.pxi - included by _core.pyx; do not compile on its own.
"""The writer lock between processes: a robust, process-shared pthread mutex kept in the
database's ``write.lock`` file (mapped shared), taken around every write transaction.

Why
---
LMDB's own writer mutex waits forever, so terndb takes a lock of its own first, one it
can give up on after the busy timeout ("database is locked").  An ``flock`` did that for
two system calls per transaction, about 1.5 us of a 15 us insert-and-commit; taking and
releasing an uncontended mutex is an atomic instruction each, in this process.

How, and why it is safe
-----------------------
* Layout of the 4096-byte file: a magic string and ``sizeof(pthread_mutex_t)`` (both
  checked before use), then the mutex at offset 64.
* Every process that has the database open for writing holds a shared ``flock`` on the
  file.  One that gets it exclusively is alone and sets the mutex up afresh
  (``init_writer_mutex(fd, True)``), then turns its flock shared: a mutex left locked by
  a process of an earlier boot (or in a copied directory) would otherwise stay locked for
  ever, since no kernel will report its owner dead.  The magic is written last, so no
  process maps a half-made mutex.
* Robust (``PTHREAD_MUTEX_ROBUST``): when a process dies holding it, the kernel hands
  it to the next locker with ``EOWNERDEAD``; the lock is then marked consistent and
  taken (LMDB recovers its own state of the dead writer the same way).
* A wait (``acquire``) releases the GIL and sleeps in the kernel until the owner
  unlocks or the timeout passes (``pthread_mutex_clocklock`` on CLOCK_MONOTONIC).
* The mutex is owned by a thread: release it on the thread that took it (a write
  transaction is bound to its thread already, as LMDB's own writer mutex requires).
"""

cdef extern from *:
    """
    #include <pthread.h>
    #include <sys/mman.h>
    #include <sys/stat.h>
    #include <unistd.h>
    #include <errno.h>
    #include <string.h>
    #include <stdint.h>
    #include <time.h>

    #define TERNDB_WLOCK_SIZE 4096
    static const char terndb_wlock_magic[32] = "terndb writer mutex v1";

    typedef struct {
        char magic[32];
        uint64_t mutex_size;
        char pad[24];
        pthread_mutex_t mutex;      /* at offset 64 */
    } terndb_wlock;

    /* The mapped lock of ``fd`` if it is set up; NULL with *err = 0 if it is not yet,
     * NULL with *err = errno on a failure. */
    static terndb_wlock *terndb_wlock_map(int fd, int *err) {
        struct stat st;
        void *p;
        terndb_wlock *w;
        *err = 0;
        if (fstat(fd, &st) != 0) { *err = errno; return NULL; }
        if (st.st_size < TERNDB_WLOCK_SIZE) return NULL;
        p = mmap(NULL, TERNDB_WLOCK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) { *err = errno; return NULL; }
        w = (terndb_wlock *)p;
        if (memcmp(w->magic, terndb_wlock_magic, sizeof(terndb_wlock_magic)) != 0
                || w->mutex_size != sizeof(pthread_mutex_t)) {
            munmap(p, TERNDB_WLOCK_SIZE);
            return NULL;
        }
        return w;
    }

    /* Sets up the lock in ``fd`` (anew if ``fresh``, else unless it already is); the
     * caller holds the file's flock exclusively.
     * Returns 0 or an errno. */
    static int terndb_wlock_init(int fd, int fresh) {
        int err = 0;
        terndb_wlock *w = fresh ? NULL : terndb_wlock_map(fd, &err);
        pthread_mutexattr_t attr;
        void *p;
        if (w != NULL) { munmap(w, TERNDB_WLOCK_SIZE); return 0; }
        if (err != 0) return err;
        if (ftruncate(fd, TERNDB_WLOCK_SIZE) != 0) return errno;
        p = mmap(NULL, TERNDB_WLOCK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) return errno;
        w = (terndb_wlock *)p;
        memset(p, 0, TERNDB_WLOCK_SIZE);
        if ((err = pthread_mutexattr_init(&attr)) == 0) {
            if ((err = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)) == 0
                    && (err = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) == 0)
                err = pthread_mutex_init(&w->mutex, &attr);
            pthread_mutexattr_destroy(&attr);
        }
        if (err == 0) {
            w->mutex_size = sizeof(pthread_mutex_t);
            __sync_synchronize();           /* the mutex is complete before the magic */
            memcpy(w->magic, terndb_wlock_magic, sizeof(terndb_wlock_magic));
        }
        munmap(p, TERNDB_WLOCK_SIZE);
        return err;
    }

    /* 0 when taken (also from a dead owner), else the pthread error. */
    static int terndb_wlock_owner_died(terndb_wlock *w, int r) {
        return r == EOWNERDEAD ? pthread_mutex_consistent(&w->mutex) : r;
    }

    static int terndb_wlock_try(terndb_wlock *w) {
        return terndb_wlock_owner_died(w, pthread_mutex_trylock(&w->mutex));
    }

    static int terndb_wlock_wait(terndb_wlock *w, double timeout) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        if (timeout > 0) {
            time_t secs = (time_t)timeout;
            until.tv_sec += secs;
            until.tv_nsec += (long)((timeout - (double)secs) * 1e9);
            if (until.tv_nsec >= 1000000000L) { until.tv_sec += 1; until.tv_nsec -= 1000000000L; }
        }
        return terndb_wlock_owner_died(w, pthread_mutex_clocklock(&w->mutex, CLOCK_MONOTONIC, &until));
    }

    static int terndb_wlock_unlock(terndb_wlock *w) {
        return pthread_mutex_unlock(&w->mutex);
    }

    static void terndb_wlock_unmap(terndb_wlock *w) {
        munmap(w, TERNDB_WLOCK_SIZE);
    }
    """
    ctypedef struct terndb_wlock:
        pass
    terndb_wlock* terndb_wlock_map(int fd, int* err)
    int terndb_wlock_init(int fd, int fresh)
    int terndb_wlock_try(terndb_wlock* w)
    int terndb_wlock_wait(terndb_wlock* w, double timeout) nogil
    int terndb_wlock_unlock(terndb_wlock* w)
    void terndb_wlock_unmap(terndb_wlock* w)
    int EBUSY
    int ETIMEDOUT


from os import strerror as _wl_strerror


def _wlock_error(int err, str what) -> OperationalError:
    return OperationalError(f"{what}: {_wl_strerror(err)}")


def init_writer_mutex(int fd, bint fresh=False) -> None:
    """Sets up the writer mutex in the open ``write.lock`` file ``fd`` (anew if ``fresh``,
    else unless it already is); call it holding that file's flock exclusively."""
    cdef int err = terndb_wlock_init(fd, fresh)
    if err != 0:
        raise _wlock_error(err, "unable to set up the database's writer lock")


cdef class WriterMutex:
    """The writer mutex mapped from a ``write.lock`` file (see ``open``)."""

    cdef terndb_wlock* lock

    @staticmethod
    def open(int fd):
        """The mutex of the ``write.lock`` file ``fd``, or None if the file does not hold
        a set-up one yet (``init_writer_mutex``)."""
        cdef int err = 0
        cdef terndb_wlock* w = terndb_wlock_map(fd, &err)
        if w == NULL:
            if err != 0:
                raise _wlock_error(err, "unable to map the database's writer lock")
            return None
        cdef WriterMutex m = WriterMutex.__new__(WriterMutex)
        m.lock = w
        return m

    cdef terndb_wlock* _mapped(self) except NULL:
        if self.lock == NULL:
            raise OperationalError("the database's writer lock is closed")
        return self.lock

    def try_acquire(self) -> bool:
        """Takes the mutex if it is free, without waiting."""
        cdef int r = terndb_wlock_try(self._mapped())
        if r == 0:
            return True
        if r == EBUSY:
            return False
        raise _wlock_error(r, "unable to lock the database")

    def acquire(self, double timeout) -> bool:
        """Takes the mutex, waiting up to ``timeout`` seconds (GIL released); False if
        it stayed taken."""
        cdef terndb_wlock* w = self._mapped()
        cdef int r
        with nogil:
            r = terndb_wlock_wait(w, timeout)
        if r == 0:
            return True
        if r == ETIMEDOUT:
            return False
        raise _wlock_error(r, "unable to lock the database")

    def release(self) -> None:
        """Releases the mutex (on the thread that took it)."""
        cdef int r = terndb_wlock_unlock(self._mapped())
        if r != 0:
            raise _wlock_error(r, "unable to unlock the database")

    def close(self) -> None:
        """Unmaps the mutex (idempotent); the file and the lock in it stay."""
        if self.lock != NULL:
            terndb_wlock_unmap(self.lock)
            self.lock = NULL

    def __dealloc__(self):
        if self.lock != NULL:
            terndb_wlock_unmap(self.lock)
