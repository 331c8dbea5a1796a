//! libxdp's side of an AF_XDP socket: the few control-path functions, opened at run time
//! (`dlopen`), the C structures they fill in, and the rings' producer and consumer steps, which
//! `xsk.h` has inline and are here in Rust (acquire loads of the other side's index, release
//! stores of ours).

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Bytes per umem chunk: a frame of up to 1 792 bytes (the kernel puts received frames 256 bytes
/// in, room for longer headers written in place).
pub(super) const CHUNK: usize = 2048;
/// Chunks per socket: half for receiving, half for sending. 8 MiB, RLIMIT_MEMLOCK's default.
pub(super) const CHUNKS: usize = 4096;
pub(super) const RING: u32 = 2048;
const XDP_RING_NEED_WAKEUP: u32 = 1;
pub(super) const XDP_USE_NEED_WAKEUP: u16 = 8;
pub(super) const XDP_OPTIONS: c_int = 8;
pub(super) const XDP_OPTIONS_ZEROCOPY: u32 = 1;
pub(super) const SOL_XDP: c_int = 283;

/// One of the four rings, as libxdp fills it in (`struct xsk_ring_prod` / `xsk_ring_cons`).
#[repr(C)]
pub(super) struct Ring {
    pub(super) cached_prod: u32,
    pub(super) cached_cons: u32,
    pub(super) mask: u32,
    pub(super) size: u32,
    pub(super) producer: *mut u32,
    pub(super) consumer: *mut u32,
    pub(super) ring: *mut c_void,
    pub(super) flags: *mut u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Desc {
    pub(super) addr: u64,
    pub(super) len: u32,
    pub(super) options: u32,
}

#[repr(C)]
pub(super) struct UmemConfig {
    pub(super) fill_size: u32,
    pub(super) comp_size: u32,
    pub(super) frame_size: u32,
    pub(super) frame_headroom: u32,
    pub(super) flags: u32,
}

#[repr(C)]
pub(super) struct SocketConfig {
    pub(super) rx_size: u32,
    pub(super) tx_size: u32,
    pub(super) libxdp_flags: u32,
    pub(super) xdp_flags: u32,
    pub(super) bind_flags: u16,
}

const _: () =
    assert!(size_of::<Ring>() == 48 && size_of::<Desc>() == 16 && size_of::<UmemConfig>() == 20 && size_of::<SocketConfig>() == 20);

type PrintFn = unsafe extern "C" fn(c_int, *const c_char, *mut c_void) -> c_int;

type UmemCreate = unsafe extern "C" fn(*mut *mut c_void, *mut c_void, u64, *mut Ring, *mut Ring, *const UmemConfig) -> c_int;
type SocketCreate =
    unsafe extern "C" fn(*mut *mut c_void, *const c_char, u32, *mut c_void, *mut Ring, *mut Ring, *const SocketConfig) -> c_int;
type SocketDelete = unsafe extern "C" fn(*mut c_void);
type UmemDelete = unsafe extern "C" fn(*mut c_void) -> c_int;
type SocketFd = unsafe extern "C" fn(*const c_void) -> c_int;
type SetPrint = unsafe extern "C" fn(Option<PrintFn>) -> Option<PrintFn>;
type GetFromIfindex = unsafe extern "C" fn(c_int) -> *mut c_void;
type GetError = unsafe extern "C" fn(*const c_void) -> std::ffi::c_long;
type MainProg = unsafe extern "C" fn(*const c_void) -> *mut c_void;
type ProgName = unsafe extern "C" fn(*const c_void) -> *const c_char;
type Detach = unsafe extern "C" fn(*mut c_void) -> c_int;
type Close = unsafe extern "C" fn(*mut c_void);

/// The few functions of libxdp (and libbpf's log switch) the control path calls.
pub(super) struct Lib {
    pub(super) umem_create: UmemCreate,
    pub(super) socket_create: SocketCreate,
    pub(super) socket_delete: SocketDelete,
    pub(super) umem_delete: UmemDelete,
    pub(super) socket_fd: SocketFd,
    get_from_ifindex: GetFromIfindex,
    get_error: GetError,
    main_prog: MainProg,
    prog_name: ProgName,
    detach: Detach,
    close: Close,
}

impl Lib {
    /// Take libxdp's redirect program off interface `ifindex` when one is there — left by a
    /// process that died with its sockets (the kernel let go of them, not of the program, which
    /// libxdp would then reuse and never take off). True when it did. Only for an interface this
    /// process holds no socket on.
    pub(super) fn detach_stale(&self, ifindex: u32) -> bool {
        // SAFETY: libxdp's calls on the object it returns, which is checked for an error pointer
        // before use and closed once.
        unsafe {
            let mp = (self.get_from_ifindex)(ifindex as c_int);
            if mp.is_null() || (self.get_error)(mp) != 0 {
                return false;
            }
            let prog = (self.main_prog)(mp);
            let name = if prog.is_null() { std::ptr::null() } else { (self.prog_name)(prog) };
            let ours = !name.is_null() && std::ffi::CStr::from_ptr(name).to_bytes() == b"xsk_def_prog";
            let detached = ours && (self.detach)(mp) == 0;
            (self.close)(mp);
            detached
        }
    }
}

/// libxdp, opened once; why not, when it cannot be.
pub(super) fn lib() -> Result<&'static Lib, String> {
    static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();
    LIB.get_or_init(open_lib).as_ref().map_err(Clone::clone)
}

fn open_lib() -> Result<Lib, String> {
    let open = |name: &str| {
        let c = CString::new(name).unwrap_or_default();
        // SAFETY: a NUL-terminated name; dlopen returns null on failure, checked below.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        (!h.is_null()).then_some(h).ok_or_else(|| format!("{name} not found (Debian's libxdp1)"))
    };
    let sym = |h: *mut c_void, name: &str| {
        let c = CString::new(name).unwrap_or_default();
        // SAFETY: a handle from dlopen and a NUL-terminated name; null is checked.
        let p = unsafe { libc::dlsym(h, c.as_ptr()) };
        (!p.is_null()).then_some(p).ok_or_else(|| format!("libxdp has no {name}"))
    };
    let xdp = open("libxdp.so.1")?;
    // SAFETY: each symbol is the C function of that name in libxdp 1.x, whose signature is the
    // one of the field it is stored in (xsk.h, libxdp.h).
    let lib = unsafe {
        Lib {
            umem_create: std::mem::transmute::<*mut c_void, UmemCreate>(sym(xdp, "xsk_umem__create")?),
            socket_create: std::mem::transmute::<*mut c_void, SocketCreate>(sym(xdp, "xsk_socket__create")?),
            socket_delete: std::mem::transmute::<*mut c_void, SocketDelete>(sym(xdp, "xsk_socket__delete")?),
            umem_delete: std::mem::transmute::<*mut c_void, UmemDelete>(sym(xdp, "xsk_umem__delete")?),
            socket_fd: std::mem::transmute::<*mut c_void, SocketFd>(sym(xdp, "xsk_socket__fd")?),
            get_from_ifindex: std::mem::transmute::<*mut c_void, GetFromIfindex>(sym(xdp, "xdp_multiprog__get_from_ifindex")?),
            get_error: std::mem::transmute::<*mut c_void, GetError>(sym(xdp, "libxdp_get_error")?),
            main_prog: std::mem::transmute::<*mut c_void, MainProg>(sym(xdp, "xdp_multiprog__main_prog")?),
            prog_name: std::mem::transmute::<*mut c_void, ProgName>(sym(xdp, "xdp_program__name")?),
            detach: std::mem::transmute::<*mut c_void, Detach>(sym(xdp, "xdp_multiprog__detach")?),
            close: std::mem::transmute::<*mut c_void, Close>(sym(xdp, "xdp_multiprog__close")?),
        }
    };
    // Their default log prints every step of loading the redirect program to stderr.
    let quiet = |h: *mut c_void, name: &str| {
        if let Ok(p) = sym(h, name) {
            // SAFETY: libxdp_set_print and libbpf_set_print take and return a print callback;
            // null means none.
            let set = unsafe { std::mem::transmute::<*mut c_void, SetPrint>(p) };
            // SAFETY: as above.
            unsafe { set(None) };
        }
    };
    quiet(xdp, "libxdp_set_print");
    if let Ok(bpf) = open("libbpf.so.1") {
        quiet(bpf, "libbpf_set_print");
    }
    Ok(lib)
}

impl Ring {
    pub(super) fn zeroed() -> Box<Ring> {
        Box::new(Ring {
            cached_prod: 0,
            cached_cons: 0,
            mask: 0,
            size: 0,
            producer: std::ptr::null_mut(),
            consumer: std::ptr::null_mut(),
            ring: std::ptr::null_mut(),
            flags: std::ptr::null_mut(),
        })
    }

    fn index(p: *mut u32) -> &'static AtomicU32 {
        // SAFETY: p is a ring index in the ring's mapping, set by libxdp, 4-byte aligned, alive
        // while the socket is (the `Xsk` owns both); the kernel writes it concurrently, so it is
        // only ever read and written as an atomic.
        unsafe { AtomicU32::from_ptr(p) }
    }

    /// Producer side (fill, tx): room for `n` entries, and where they start.
    pub(super) fn reserve(&mut self, n: u32) -> Option<u32> {
        if self.cached_cons.wrapping_sub(self.cached_prod) < n {
            self.cached_cons = Ring::index(self.consumer).load(Ordering::Acquire).wrapping_add(self.size);
        }
        if self.cached_cons.wrapping_sub(self.cached_prod) < n {
            return None;
        }
        let at = self.cached_prod;
        self.cached_prod = at.wrapping_add(n);
        Some(at)
    }

    pub(super) fn submit(&mut self, n: u32) {
        let p = Ring::index(self.producer);
        p.store(p.load(Ordering::Relaxed).wrapping_add(n), Ordering::Release);
    }

    pub(super) fn needs_wakeup(&self) -> bool {
        Ring::index(self.flags).load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }

    /// Consumer side (rx, completion): up to `n` entries ready, and where they start.
    pub(super) fn peek(&mut self, n: u32) -> (u32, u32) {
        if self.cached_prod == self.cached_cons {
            self.cached_prod = Ring::index(self.producer).load(Ordering::Acquire);
        }
        let got = self.cached_prod.wrapping_sub(self.cached_cons).min(n);
        let at = self.cached_cons;
        self.cached_cons = at.wrapping_add(got);
        (got, at)
    }

    pub(super) fn release(&mut self, n: u32) {
        let c = Ring::index(self.consumer);
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Release);
    }

    /// Entry `i` of a ring of `T` (u64 addresses, or descriptors).
    pub(super) fn slot<T>(&self, i: u32) -> *mut T {
        // SAFETY: `i & mask` < size, and the ring holds `size` entries of T (libxdp mapped it).
        unsafe { (self.ring as *mut T).add((i & self.mask) as usize) }
    }
}
