"""Event kinds that both replay implementations emit, one per decision, in order.

Counters, bytes and predicted time are all derived from the event stream (`simulator.accounting`),
so the reference core and the numba kernel agree on metrics exactly when they agree on events.
"""

HIT = 0  # demand access found in VRAM
LOAD_RAM = 1  # demand miss served from RAM over PCIe, admitted to VRAM
LOAD_NVME = 2  # demand miss read from NVMe, then PCIe, admitted to VRAM
STAGE_RAM = 3  # demand miss from RAM streamed through the staging buffer, not admitted
STAGE_NVME = 4  # the same, from NVMe
CPU_RAM = 5  # cpu-compute mode: computed on the CPU from RAM
CPU_NVME = 6  # cpu-compute mode: read from NVMe into RAM, computed on the CPU
PREFETCH_RAM = 7  # prefetch into VRAM from RAM
PREFETCH_NVME = 8  # prefetch into VRAM from NVMe
FILL = 9  # cpu-compute mode: background copy RAM -> VRAM of an expert just computed on the CPU
EVICT_VRAM = 10
EVICT_RAM = 11
DEMOTE = 12  # exclusive tiers: a VRAM victim copied down to RAM
READAHEAD = 13  # a prefetch that reached RAM but was not admitted to VRAM

NAMES = ("hit", "load_ram", "load_nvme", "stage_ram", "stage_nvme", "cpu_ram", "cpu_nvme", "prefetch_ram",
         "prefetch_nvme", "fill", "evict_vram", "evict_ram", "demote", "readahead")
DEMAND = (HIT, LOAD_RAM, LOAD_NVME, STAGE_RAM, STAGE_NVME, CPU_RAM, CPU_NVME)
FROM_RAM = (LOAD_RAM, STAGE_RAM, CPU_RAM)
FROM_NVME = (LOAD_NVME, STAGE_NVME, CPU_NVME)
