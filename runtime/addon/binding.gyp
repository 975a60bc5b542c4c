{
  "variables": {
    "has_libbpf": "<!(test -f /usr/include/bpf/libbpf.h && echo 1 || echo 0)"
  },
  "targets": [
    {
      "target_name": "ambit_addon",
      "sources": ["src/addon.c", "src/system-error.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "ambit_shared",
      "sources": ["src/shared-napi.c", "src/shared-table.c", "src/system-error.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lpthread", "-lm"]
    }
  ],
  "conditions": [
    ["has_libbpf==1", {
      "targets": [
        {
          "target_name": "ambit_bpf",
          "sources": ["src/bpf.c", "src/system-error.c"],
          "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
          "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
          "libraries": ["-lbpf"]
        }
      ]
    }]
  ]
}
