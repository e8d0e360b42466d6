"""The machine and the process fastconv runs in, each concern one module:

* `fastconv.system.env`     -- the ``FASTCONV_*`` environment variables, read and checked
  in one place (also importable as ``fastconv.env``);
* `fastconv.system.cpu`     -- what CPU this is (model, vendor), for caches that must
  not carry over to another machine;
* `fastconv.system.load`    -- how busy this process's cores are, and what thread count
  to advise;
* `fastconv.system.seeding` -- the global seed behind every default random generator
  (`fastconv.manual_seed`).

They import nothing of fastconv's but each other, so any layer or backend may use them.
"""
