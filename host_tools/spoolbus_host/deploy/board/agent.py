"""The deploy agent: run by the bootstrap in a board's raw REPL, it answers one request line at a time.

MicroPython code, read as text by deploy/agent.py (docstring and comment lines are dropped before it
travels). Requests: H hashes, T manifest, G get, P put, C copy, L list, X remove, N rename, S keep a copy
of the agent (its source is `_src`, left by the bootstrap), Q quit. The line protocol carries base64 or,
where stdin is binary, length-prefixed chunks: no control bytes, so neither a tty nor a port's Ctrl-C
handling can touch it; a line holding Ctrl-C (0x03) ends the agent, so a new deploy can always take over.
"""
import os,sys,binascii,hashlib,gc
try:
    import io,deflate;_B=io.IOBase
    # the window of one deflate stream for every file: up to an 8th of the free heap
    gc.collect();_z=10
    while _z<15 and 16<<_z<gc.mem_free():_z+=1
    # and half the largest free block: an application's objects leave the heap in pieces
    while _z>10:
        try:bytearray(2<<_z);break
        except MemoryError:_z-=1
except ImportError:
    _z=0;_B=object
class _R(_B):
    # The wire bytes of the puts: each adds n bytes in chunk lines, the first read before the file is
    # opened. A chunk is acknowledged (K: send the next) when the writer starts on it, the last one by
    # the put's reply. Compressed, the bytes a file leaves unread (its stream's flush) open the next.
    def __init__(s):s.n=0;s.k=0;s.b=b'';s.i=0
    def put(s,n):
        s.n=n;s._l()
    def _l(s):
        l=sys.stdin.readline()
        if '\x03' in l:raise KeyboardInterrupt
        d=_d(l);s.n-=len(d);s.k=s.n>0;s.b=s.b[s.i:]+d if s.i<len(s.b) else d;s.i=0
    def readinto(s,m):
        if s.i==len(s.b) and s.n>0:s._l()
        if s.k:_o('K');s.k=0
        n=min(len(m),len(s.b)-s.i);m[:n]=memoryview(s.b)[s.i:s.i+n];s.i+=n
        return n
    def end(s):
        while s.n>0:
            if s.k:_o('K')
            s._l()
_r=_R()
if _z:_zs=deflate.DeflateIO(_r,deflate.RAW,_z)
try:
    import select,micropython
    _p=select.poll();_p.register(sys.stdin,select.POLLIN);_i=sys.stdin.buffer;_b=1
except (ImportError,AttributeError):
    _b=0
def _rd(n):
    b=bytearray(n);m=memoryview(b);i=0
    while i<n:
        if not _p.poll(1500):raise OSError('link quiet mid-chunk')
        i+=_i.readinto(m[i:min(n,i+64)])
    return b
def _d(l):
    if l[0]=='B':return _rd(int(l[1:]))
    return binascii.a2b_base64(l[1:])
def _o(s):
    sys.stdout.write(s+'\n')
def _h(p):
    h=hashlib.sha256();b=bytearray(1024);m=memoryview(b)
    with open(p,'rb') as f:
        while 1:
            n=f.readinto(b)
            if not n:break
            h.update(m[:n])
    return binascii.hexlify(h.digest()).decode()
def _walk(d,pre,out):
    for e in os.ilistdir(d):
        if e[1]==0x4000:_walk(d+'/'+e[0],pre+e[0]+'/',out)
        else:out.append(pre+e[0])
def _rm(p):
    try:os.remove(p)
    except OSError:
        for e in os.ilistdir(p):_rm(p+'/'+e[0])
        os.rmdir(p)
def _md(p):
    q=''
    for s in p.split('/'):
        q+=s
        if s:
            try:os.mkdir(q)
            except OSError:pass
        q+='/'
def _x(p):
    try:os.stat(p)
    except OSError:return 0
    return 1
_o('SBD %d %d %d %s'%(getattr(sys.implementation,'_mpy',0),_z,_b,sys.platform))
if _b:micropython.kbd_intr(-1)
while 1:
    l=sys.stdin.readline()
    if not l or '\x03' in l:break
    c=l[0];a=l[1:].strip().split(' ')
    try:
        if c=='Q':
            _o('OK');break
        elif c=='H':
            out=[]
            if _x(a[0]):_walk(a[0],'',out)
            _o('OK %d'%len(out))
            for p in out:_o('%s %s'%(_h(a[0]+'/'+p),p))
        elif c=='T':
            out=[]
            if _x(a[0]):_walk(a[0],'',out)
            out.sort();h=hashlib.sha256();f=open(a[0]+'/.manifest','w') if len(a)>1 else None
            for l in ['spoolbus-manifest 1\n']+['%s %d %s\n'%(_h(a[0]+'/'+p),os.stat(a[0]+'/'+p)[6],p)
                                             for p in out if p!='.manifest']:
                h.update(l)
                if f:f.write(l)
            if f:f.close()
            _o('OK '+binascii.hexlify(h.digest()).decode())
        elif c=='G':
            if not _x(a[0]):_o('OK -')
            else:
                with open(a[0],'rb') as f:_o('OK '+binascii.b2a_base64(f.read()).decode().strip())
        elif c=='P':
            _r.put(int(a[2]));i=a[0].rfind('/')
            if i>0:_md(a[0][:i])
            h=hashlib.sha256();k=int(a[3]);m=memoryview(bytearray(512))
            with open(a[0],'wb') as f:
                while k:
                    n=(_zs if a[1]=='z' else _r).readinto(m[:min(k,512)])
                    if not n:raise EOFError
                    f.write(m[:n]);h.update(m[:n]);k-=n
            _r.end()
            _o('OK '+binascii.hexlify(h.digest()).decode()[:16])
        elif c=='C':
            i=a[1].rfind('/')
            if i>0:_md(a[1][:i])
            b=bytearray(1024);m=memoryview(b)
            with open(a[0],'rb') as f,open(a[1],'wb') as g:
                while 1:
                    n=f.readinto(b)
                    if not n:break
                    g.write(m[:n])
            _o('OK')
        elif c=='L':
            _o('OK '+' '.join(e[0] for e in os.ilistdir(a[0])) if _x(a[0]) else 'OK')
        elif c=='X':
            if _x(a[0]):_rm(a[0])
            _o('OK')
        elif c=='N':
            os.rename(a[0],a[1]);_o('OK')
        elif c=='S':
            _md(a[0][:a[0].rfind('/')])
            with open(a[0]+'.new','wb') as f:f.write(_src)
            os.rename(a[0]+'.new',a[0]);_o('OK')
        else:
            _o('ER unknown request %s'%c)
    except KeyboardInterrupt:
        break
    except Exception as e:
        _o('ER %s %r'%(type(e).__name__,e.args))
if _b:micropython.kbd_intr(3)
