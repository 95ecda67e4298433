#!/usr/bin/env python3
"""Lists import cycles between the modules of each crate (a module using `crate::X`
counts as depending on X; tests are left out). Prints nothing and exits 0 when there
are none; exits 1 naming each cycle otherwise. Run from the repository root; CI runs it."""
import re, os, sys
found = False
def mods(crate):
    src=f'crates/{crate}/src'
    files={}
    for root,_,fs in os.walk(src):
        for f in fs:
            if f.endswith('.rs'):
                p=os.path.join(root,f)
                rel=os.path.relpath(p,src)[:-3]
                name=rel.replace('/mod','').split('/')[0]
                if name in ('lib','main'): continue
                files.setdefault(name,[]).append(p)
    return files
for crate in sorted(os.listdir('crates')):
    files=mods(crate)
    names=set(files)
    edges={n:set() for n in names}
    for n,ps in files.items():
        for p in ps:
            s=open(p).read()
            # strip tests
            s=s.split('#[cfg(test)]')[0]
            for m in re.findall(r'crate::(\w+)',s):
                if m in names and m!=n: edges[n].add(m)
            for m in re.findall(r'super::(\w+)',s):
                pass
    # find SCCs
    idx={};low={};st=[];on=set();sccs=[];c=[0]
    sys.setrecursionlimit(10000)
    def sc(v):
        idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
        for w in edges[v]:
            if w not in idx: sc(w);low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],idx[w])
        if low[v]==idx[v]:
            comp=[]
            while True:
                w=st.pop();on.discard(w);comp.append(w)
                if w==v: break
            if len(comp)>1: sccs.append(sorted(comp))
    for v in sorted(names):
        if v not in idx: sc(v)
    if sccs:
        print(crate, sccs)
        found = True
sys.exit(1 if found else 0)
