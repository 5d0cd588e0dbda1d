{
  "targets": [
    {
      "target_name": "pmpool",
      "sources": ["native/pmpool.c", "native/mappings.c", "native/helpers.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
