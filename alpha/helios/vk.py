"""Vulkan through ctypes: the structs (exact header layouts), constants and entry points helios uses.

Only `vkGetInstanceProcAddr` is taken from libvulkan.so.1; instance functions come through it and
device functions through `vkGetDeviceProcAddr` (faster, and how extension functions must be
loaded). Every function gets a full signature: dispatchable handles are c_void_p, non-dispatchable
ones c_uint64, pointers c_void_p (pass `byref(x)` or an address). Layouts were checked with the
sizes the headers give (VkPhysicalDeviceLimits 504, VkPhysicalDeviceProperties 824,
VkPhysicalDeviceMemoryProperties 520) — see tests/test_helios_vk.py.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import Structure, c_char, c_float, c_int32, c_size_t, c_uint8, \
    c_uint32, c_uint64, c_void_p

from alpha.core.errors import BackendUnavailable

u32, u64, f32, ptr, size_t = c_uint32, c_uint64, c_float, c_void_p, c_size_t
H = c_void_p   # dispatchable handle
NH = c_uint64  # non-dispatchable handle

# ---- constants -------------------------------------------------------------------------------
API_1_2 = (1 << 22) | (2 << 12)
API_1_3 = (1 << 22) | (3 << 12)
WHOLE_SIZE = 0xFFFFFFFFFFFFFFFF
QUEUE_COMPUTE = 0x2
MEM_DEVICE_LOCAL, MEM_HOST_VISIBLE, MEM_HOST_COHERENT, MEM_HOST_CACHED = 1, 2, 4, 8
BUF_TRANSFER_SRC, BUF_TRANSFER_DST, BUF_STORAGE, BUF_DEVICE_ADDRESS = 1, 2, 0x20, 0x20000
MEMORY_ALLOCATE_DEVICE_ADDRESS = 0x2
STAGE_COMPUTE_SHADER, STAGE_TRANSFER, STAGE_TOP, STAGE_BOTTOM, STAGE_HOST = \
    0x800, 0x1000, 0x1, 0x2000, 0x4000
ACCESS_SHADER_READ, ACCESS_SHADER_WRITE = 0x20, 0x40
ACCESS_TRANSFER_READ, ACCESS_TRANSFER_WRITE, ACCESS_HOST_READ = 0x800, 0x1000, 0x2000
SHADER_STAGE_COMPUTE = 0x20
BIND_POINT_COMPUTE = 1
CMD_ONE_TIME_SUBMIT = 0x1
POOL_RESET_COMMAND_BUFFER = 0x2
QUERY_TIMESTAMP = 2
QUERY_RESULT_64_WAIT = 0x3
DEVICE_TYPES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}

ST_APPLICATION_INFO, ST_INSTANCE_CREATE_INFO = 0, 1
ST_DEVICE_QUEUE_CREATE_INFO, ST_DEVICE_CREATE_INFO, ST_SUBMIT_INFO = 2, 3, 4
ST_MEMORY_ALLOCATE_INFO, ST_FENCE_CREATE_INFO, ST_QUERY_POOL_CREATE_INFO = 5, 8, 11
ST_BUFFER_CREATE_INFO, ST_SHADER_MODULE_CREATE_INFO, ST_PIPELINE_CACHE_CREATE_INFO = 12, 16, 17
ST_PIPELINE_SHADER_STAGE_CREATE_INFO, ST_COMPUTE_PIPELINE_CREATE_INFO = 18, 29
ST_PIPELINE_LAYOUT_CREATE_INFO, ST_COMMAND_POOL_CREATE_INFO = 30, 39
ST_COMMAND_BUFFER_ALLOCATE_INFO, ST_COMMAND_BUFFER_BEGIN_INFO, ST_MEMORY_BARRIER = 40, 42, 46
ST_VULKAN_1_1_FEATURES, ST_VULKAN_1_2_FEATURES, ST_VULKAN_1_3_FEATURES = 49, 51, 53
ST_FEATURES_2, ST_PROPERTIES_2 = 1000059000, 1000059001
ST_SUBGROUP_PROPERTIES = 1000094000
ST_MEMORY_ALLOCATE_FLAGS_INFO = 1000060000
ST_BUFFER_DEVICE_ADDRESS_INFO = 1000244001
ST_COOPMAT_FEATURES_KHR, ST_COOPMAT_PROPERTIES_KHR = 1000506000, 1000506001
ST_BFLOAT16_FEATURES_KHR = 1000141000
ST_COOPMAT2_FEATURES_NV, ST_COOPMAT_FLEXIBLE_NV = 1000593000, 1000593001
ST_COOPMAT2_PROPERTIES_NV = 1000593002
COMPONENT_TYPES = {0: "f16", 1: "f32", 2: "f64", 3: "s8", 4: "s16", 5: "s32", 6: "s64",
                   7: "u8", 8: "u16", 9: "u32", 10: "u64", 1000141000: "bf16"}


def _struct(name: str, fields: list) -> type:
    return type(name, (Structure,), {"_fields_": fields})


def _bools(names: str) -> list:
    return [(n, u32) for n in names.split()]


# ---- structs ---------------------------------------------------------------------------------
ApplicationInfo = _struct("ApplicationInfo", [
    ("sType", u32), ("pNext", ptr), ("pApplicationName", ptr), ("applicationVersion", u32),
    ("pEngineName", ptr), ("engineVersion", u32), ("apiVersion", u32)])
InstanceCreateInfo = _struct("InstanceCreateInfo", [
    ("sType", u32), ("pNext", ptr), ("flags", u32), ("pApplicationInfo", ptr),
    ("enabledLayerCount", u32), ("ppEnabledLayerNames", ptr),
    ("enabledExtensionCount", u32), ("ppEnabledExtensionNames", ptr)])

_LIMIT_U32_A = ("maxImageDimension1D maxImageDimension2D maxImageDimension3D maxImageDimensionCube "
                "maxImageArrayLayers maxTexelBufferElements maxUniformBufferRange "
                "maxStorageBufferRange maxPushConstantsSize maxMemoryAllocationCount "
                "maxSamplerAllocationCount")
_LIMIT_U32_B = (
    "maxBoundDescriptorSets maxPerStageDescriptorSamplers maxPerStageDescriptorUniformBuffers "
    "maxPerStageDescriptorStorageBuffers maxPerStageDescriptorSampledImages "
    "maxPerStageDescriptorStorageImages maxPerStageDescriptorInputAttachments maxPerStageResources "
    "maxDescriptorSetSamplers maxDescriptorSetUniformBuffers "
    "maxDescriptorSetUniformBuffersDynamic maxDescriptorSetStorageBuffers "
    "maxDescriptorSetStorageBuffersDynamic maxDescriptorSetSampledImages "
    "maxDescriptorSetStorageImages maxDescriptorSetInputAttachments maxVertexInputAttributes "
    "maxVertexInputBindings maxVertexInputAttributeOffset maxVertexInputBindingStride "
    "maxVertexOutputComponents maxTessellationGenerationLevel maxTessellationPatchSize "
    "maxTessellationControlPerVertexInputComponents "
    "maxTessellationControlPerVertexOutputComponents "
    "maxTessellationControlPerPatchOutputComponents maxTessellationControlTotalOutputComponents "
    "maxTessellationEvaluationInputComponents maxTessellationEvaluationOutputComponents "
    "maxGeometryShaderInvocations maxGeometryInputComponents maxGeometryOutputComponents "
    "maxGeometryOutputVertices maxGeometryTotalOutputComponents maxFragmentInputComponents "
    "maxFragmentOutputAttachments maxFragmentDualSrcAttachments "
    "maxFragmentCombinedOutputResources maxComputeSharedMemorySize")
PhysicalDeviceLimits = _struct("PhysicalDeviceLimits", _bools(_LIMIT_U32_A) + [
    ("bufferImageGranularity", u64), ("sparseAddressSpaceSize", u64)] + _bools(_LIMIT_U32_B) + [
    ("maxComputeWorkGroupCount", u32 * 3), ("maxComputeWorkGroupInvocations", u32),
    ("maxComputeWorkGroupSize", u32 * 3), ("subPixelPrecisionBits", u32),
    ("subTexelPrecisionBits", u32), ("mipmapPrecisionBits", u32),
    ("maxDrawIndexedIndexValue", u32), ("maxDrawIndirectCount", u32),
    ("maxSamplerLodBias", f32), ("maxSamplerAnisotropy", f32), ("maxViewports", u32),
    ("maxViewportDimensions", u32 * 2), ("viewportBoundsRange", f32 * 2),
    ("viewportSubPixelBits", u32), ("minMemoryMapAlignment", size_t),
    ("minTexelBufferOffsetAlignment", u64), ("minUniformBufferOffsetAlignment", u64),
    ("minStorageBufferOffsetAlignment", u64), ("minTexelOffset", c_int32),
    ("maxTexelOffset", u32), ("minTexelGatherOffset", c_int32), ("maxTexelGatherOffset", u32),
    ("minInterpolationOffset", f32), ("maxInterpolationOffset", f32)] + _bools(
    "subPixelInterpolationOffsetBits maxFramebufferWidth maxFramebufferHeight "
    "maxFramebufferLayers framebufferColorSampleCounts framebufferDepthSampleCounts "
    "framebufferStencilSampleCounts framebufferNoAttachmentsSampleCounts maxColorAttachments "
    "sampledImageColorSampleCounts sampledImageIntegerSampleCounts sampledImageDepthSampleCounts "
    "sampledImageStencilSampleCounts storageImageSampleCounts maxSampleMaskWords "
    "timestampComputeAndGraphics") + [
    ("timestampPeriod", f32), ("maxClipDistances", u32), ("maxCullDistances", u32),
    ("maxCombinedClipAndCullDistances", u32), ("discreteQueuePriorities", u32),
    ("pointSizeRange", f32 * 2), ("lineWidthRange", f32 * 2), ("pointSizeGranularity", f32),
    ("lineWidthGranularity", f32), ("strictLines", u32), ("standardSampleLocations", u32),
    ("optimalBufferCopyOffsetAlignment", u64), ("optimalBufferCopyRowPitchAlignment", u64),
    ("nonCoherentAtomSize", u64)])
PhysicalDeviceProperties = _struct("PhysicalDeviceProperties", [
    ("apiVersion", u32), ("driverVersion", u32), ("vendorID", u32), ("deviceID", u32),
    ("deviceType", u32), ("deviceName", c_char * 256), ("pipelineCacheUUID", c_uint8 * 16),
    ("limits", PhysicalDeviceLimits), ("sparseProperties", u32 * 5)])
PhysicalDeviceProperties2 = _struct("PhysicalDeviceProperties2", [
    ("sType", u32), ("pNext", ptr), ("properties", PhysicalDeviceProperties)])
SubgroupProperties = _struct("SubgroupProperties", [
    ("sType", u32), ("pNext", ptr), ("subgroupSize", u32), ("supportedStages", u32),
    ("supportedOperations", u32), ("quadOperationsInAllStages", u32)])
QueueFamilyProperties = _struct("QueueFamilyProperties", [
    ("queueFlags", u32), ("queueCount", u32), ("timestampValidBits", u32),
    ("minImageTransferGranularity", u32 * 3)])
MemoryType = _struct("MemoryType", [("propertyFlags", u32), ("heapIndex", u32)])
MemoryHeap = _struct("MemoryHeap", [("size", u64), ("flags", u32)])
PhysicalDeviceMemoryProperties = _struct("PhysicalDeviceMemoryProperties", [
    ("memoryTypeCount", u32), ("memoryTypes", MemoryType * 32), ("memoryHeapCount", u32),
    ("memoryHeaps", MemoryHeap * 16)])
ExtensionProperties = _struct("ExtensionProperties", [
    ("extensionName", c_char * 256), ("specVersion", u32)])

FEATURE_NAMES = (
    "robustBufferAccess fullDrawIndexUint32 imageCubeArray independentBlend geometryShader "
    "tessellationShader sampleRateShading dualSrcBlend logicOp multiDrawIndirect "
    "drawIndirectFirstInstance depthClamp depthBiasClamp fillModeNonSolid depthBounds wideLines "
    "largePoints alphaToOne multiViewport samplerAnisotropy textureCompressionETC2 "
    "textureCompressionASTC_LDR textureCompressionBC occlusionQueryPrecise "
    "pipelineStatisticsQuery vertexPipelineStoresAndAtomics fragmentStoresAndAtomics "
    "shaderTessellationAndGeometryPointSize shaderImageGatherExtended "
    "shaderStorageImageExtendedFormats shaderStorageImageMultisample "
    "shaderStorageImageReadWithoutFormat shaderStorageImageWriteWithoutFormat "
    "shaderUniformBufferArrayDynamicIndexing shaderSampledImageArrayDynamicIndexing "
    "shaderStorageBufferArrayDynamicIndexing shaderStorageImageArrayDynamicIndexing "
    "shaderClipDistance shaderCullDistance shaderFloat64 shaderInt64 shaderInt16 "
    "shaderResourceResidency shaderResourceMinLod sparseBinding sparseResidencyBuffer "
    "sparseResidencyImage2D sparseResidencyImage3D sparseResidency2Samples "
    "sparseResidency4Samples sparseResidency8Samples sparseResidency16Samples "
    "sparseResidencyAliased variableMultisampleRate inheritedQueries")
PhysicalDeviceFeatures2 = _struct("PhysicalDeviceFeatures2", [
    ("sType", u32), ("pNext", ptr)] + _bools(FEATURE_NAMES))
Vulkan11Features = _struct("Vulkan11Features", [("sType", u32), ("pNext", ptr)] + _bools(
    "storageBuffer16BitAccess uniformAndStorageBuffer16BitAccess storagePushConstant16 "
    "storageInputOutput16 multiview multiviewGeometryShader multiviewTessellationShader "
    "variablePointersStorageBuffer variablePointers protectedMemory samplerYcbcrConversion "
    "shaderDrawParameters"))
Vulkan12Features = _struct("Vulkan12Features", [("sType", u32), ("pNext", ptr)] + _bools(
    "samplerMirrorClampToEdge drawIndirectCount storageBuffer8BitAccess "
    "uniformAndStorageBuffer8BitAccess storagePushConstant8 shaderBufferInt64Atomics "
    "shaderSharedInt64Atomics shaderFloat16 shaderInt8 descriptorIndexing "
    "shaderInputAttachmentArrayDynamicIndexing shaderUniformTexelBufferArrayDynamicIndexing "
    "shaderStorageTexelBufferArrayDynamicIndexing shaderUniformBufferArrayNonUniformIndexing "
    "shaderSampledImageArrayNonUniformIndexing shaderStorageBufferArrayNonUniformIndexing "
    "shaderStorageImageArrayNonUniformIndexing shaderInputAttachmentArrayNonUniformIndexing "
    "shaderUniformTexelBufferArrayNonUniformIndexing "
    "shaderStorageTexelBufferArrayNonUniformIndexing "
    "descriptorBindingUniformBufferUpdateAfterBind descriptorBindingSampledImageUpdateAfterBind "
    "descriptorBindingStorageImageUpdateAfterBind descriptorBindingStorageBufferUpdateAfterBind "
    "descriptorBindingUniformTexelBufferUpdateAfterBind "
    "descriptorBindingStorageTexelBufferUpdateAfterBind "
    "descriptorBindingUpdateUnusedWhilePending descriptorBindingPartiallyBound "
    "descriptorBindingVariableDescriptorCount runtimeDescriptorArray samplerFilterMinmax "
    "scalarBlockLayout imagelessFramebuffer uniformBufferStandardLayout "
    "shaderSubgroupExtendedTypes separateDepthStencilLayouts hostQueryReset timelineSemaphore "
    "bufferDeviceAddress bufferDeviceAddressCaptureReplay bufferDeviceAddressMultiDevice "
    "vulkanMemoryModel vulkanMemoryModelDeviceScope "
    "vulkanMemoryModelAvailabilityVisibilityChains shaderOutputViewportIndex shaderOutputLayer "
    "subgroupBroadcastDynamicId"))
Vulkan13Features = _struct("Vulkan13Features", [("sType", u32), ("pNext", ptr)] + _bools(
    "robustImageAccess inlineUniformBlock descriptorBindingInlineUniformBlockUpdateAfterBind "
    "pipelineCreationCacheControl privateData shaderDemoteToHelperInvocation "
    "shaderTerminateInvocation subgroupSizeControl computeFullSubgroups synchronization2 "
    "textureCompressionASTC_HDR shaderZeroInitializeWorkgroupMemory dynamicRendering "
    "shaderIntegerDotProduct maintenance4"))
CoopMatFeatures = _struct("CoopMatFeatures", [
    ("sType", u32), ("pNext", ptr), ("cooperativeMatrix", u32),
    ("cooperativeMatrixRobustBufferAccess", u32)])
Bfloat16Features = _struct("Bfloat16Features", [("sType", u32), ("pNext", ptr)] + _bools(
    "shaderBFloat16Type shaderBFloat16DotProduct shaderBFloat16CooperativeMatrix"))
CoopMat2Features = _struct("CoopMat2Features", [("sType", u32), ("pNext", ptr)] + _bools(
    "cooperativeMatrixWorkgroupScope cooperativeMatrixFlexibleDimensions "
    "cooperativeMatrixReductions cooperativeMatrixConversions "
    "cooperativeMatrixPerElementOperations cooperativeMatrixTensorAddressing "
    "cooperativeMatrixBlockLoads"))
CoopMat2Properties = _struct("CoopMat2Properties", [
    ("sType", u32), ("pNext", ptr), ("workgroupScopeMaxWorkgroupSize", u32),
    ("flexibleDimensionsMaxDimension", u32), ("workgroupScopeReservedSharedMemory", u32)])
CoopMatFlexibleProperties = _struct("CoopMatFlexibleProperties", [
    ("sType", u32), ("pNext", ptr), ("MGranularity", u32), ("NGranularity", u32),
    ("KGranularity", u32), ("AType", u32), ("BType", u32), ("CType", u32), ("ResultType", u32),
    ("saturatingAccumulation", u32), ("scope", u32), ("workgroupInvocations", u32)])
CoopMatProperties = _struct("CoopMatProperties", [
    ("sType", u32), ("pNext", ptr), ("MSize", u32), ("NSize", u32), ("KSize", u32),
    ("AType", u32), ("BType", u32), ("CType", u32), ("ResultType", u32),
    ("saturatingAccumulation", u32), ("scope", u32)])

DeviceQueueCreateInfo = _struct("DeviceQueueCreateInfo", [
    ("sType", u32), ("pNext", ptr), ("flags", u32), ("queueFamilyIndex", u32),
    ("queueCount", u32), ("pQueuePriorities", ptr)])
DeviceCreateInfo = _struct("DeviceCreateInfo", [
    ("sType", u32), ("pNext", ptr), ("flags", u32), ("queueCreateInfoCount", u32),
    ("pQueueCreateInfos", ptr), ("enabledLayerCount", u32), ("ppEnabledLayerNames", ptr),
    ("enabledExtensionCount", u32), ("ppEnabledExtensionNames", ptr),
    ("pEnabledFeatures", ptr)])
BufferCreateInfo = _struct("BufferCreateInfo", [
    ("sType", u32), ("pNext", ptr), ("flags", u32), ("size", u64), ("usage", u32),
    ("sharingMode", u32), ("queueFamilyIndexCount", u32), ("pQueueFamilyIndices", ptr)])
MemoryRequirements = _struct("MemoryRequirements", [
    ("size", u64), ("alignment", u64), ("memoryTypeBits", u32)])
MemoryAllocateInfo = _struct("MemoryAllocateInfo", [
    ("sType", u32), ("pNext", ptr), ("allocationSize", u64), ("memoryTypeIndex", u32)])
MemoryAllocateFlagsInfo = _struct("MemoryAllocateFlagsInfo", [
    ("sType", u32), ("pNext", ptr), ("flags", u32), ("deviceMask", u32)])
BufferDeviceAddressInfo = _struct("BufferDeviceAddressInfo", [
    ("sType", u32), ("pNext", ptr), ("buffer", NH)])
ShaderModuleCreateInfo = _struct("ShaderModuleCreateInfo", [
    ("sType", u32), ("pNext", ptr), ("flags", u32), ("codeSize", size_t), ("pCode", ptr)])
PushConstantRange = _struct("PushConstantRange", [
    ("stageFlags", u32), ("offset", u32), ("size", u32)])
PipelineLayoutCreateInfo = _struct("PipelineLayoutCreateInfo", [
    ("sType", u32), ("pNext", ptr), ("flags", u32), ("setLayoutCount", u32),
    ("pSetLayouts", ptr), ("pushConstantRangeCount", u32), ("pPushConstantRanges", ptr)])
PipelineShaderStageCreateInfo = _struct("PipelineShaderStageCreateInfo", [
    ("sType", u32), ("pNext", ptr), ("flags", u32), ("stage", u32), ("module", NH),
    ("pName", ptr), ("pSpecializationInfo", ptr)])
ComputePipelineCreateInfo = _struct("ComputePipelineCreateInfo", [
    ("sType", u32), ("pNext", ptr), ("flags", u32), ("stage", PipelineShaderStageCreateInfo),
    ("layout", NH), ("basePipelineHandle", NH), ("basePipelineIndex", c_int32)])
PipelineCacheCreateInfo = _struct("PipelineCacheCreateInfo", [
    ("sType", u32), ("pNext", ptr), ("flags", u32), ("initialDataSize", size_t),
    ("pInitialData", ptr)])
CommandPoolCreateInfo = _struct("CommandPoolCreateInfo", [
    ("sType", u32), ("pNext", ptr), ("flags", u32), ("queueFamilyIndex", u32)])
CommandBufferAllocateInfo = _struct("CommandBufferAllocateInfo", [
    ("sType", u32), ("pNext", ptr), ("commandPool", NH), ("level", u32),
    ("commandBufferCount", u32)])
CommandBufferBeginInfo = _struct("CommandBufferBeginInfo", [
    ("sType", u32), ("pNext", ptr), ("flags", u32), ("pInheritanceInfo", ptr)])
MemoryBarrier = _struct("MemoryBarrier", [
    ("sType", u32), ("pNext", ptr), ("srcAccessMask", u32), ("dstAccessMask", u32)])
BufferCopy = _struct("BufferCopy", [("srcOffset", u64), ("dstOffset", u64), ("size", u64)])
SubmitInfo = _struct("SubmitInfo", [
    ("sType", u32), ("pNext", ptr), ("waitSemaphoreCount", u32), ("pWaitSemaphores", ptr),
    ("pWaitDstStageMask", ptr), ("commandBufferCount", u32), ("pCommandBuffers", ptr),
    ("signalSemaphoreCount", u32), ("pSignalSemaphores", ptr)])
FenceCreateInfo = _struct("FenceCreateInfo", [("sType", u32), ("pNext", ptr), ("flags", u32)])
QueryPoolCreateInfo = _struct("QueryPoolCreateInfo", [
    ("sType", u32), ("pNext", ptr), ("flags", u32), ("queryType", u32), ("queryCount", u32),
    ("pipelineStatistics", u32)])

# ---- entry points ----------------------------------------------------------------------------
R = c_int32  # VkResult
INSTANCE_FUNCS = {
    "vkDestroyInstance": (None, [H, ptr]),
    "vkEnumeratePhysicalDevices": (R, [H, ptr, ptr]),
    "vkGetPhysicalDeviceProperties": (None, [H, ptr]),
    "vkGetPhysicalDeviceProperties2": (None, [H, ptr]),
    "vkGetPhysicalDeviceFeatures2": (None, [H, ptr]),
    "vkGetPhysicalDeviceQueueFamilyProperties": (None, [H, ptr, ptr]),
    "vkGetPhysicalDeviceMemoryProperties": (None, [H, ptr]),
    "vkEnumerateDeviceExtensionProperties": (R, [H, ptr, ptr, ptr]),
    "vkCreateDevice": (R, [H, ptr, ptr, ptr]),
    "vkGetDeviceProcAddr": (c_void_p, [H, ctypes.c_char_p]),
}
OPTIONAL_INSTANCE_FUNCS = {
    "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR": (R, [H, ptr, ptr]),
    "vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV": (R, [H, ptr, ptr]),
}
DEVICE_FUNCS = {
    "vkDestroyDevice": (None, [H, ptr]),
    "vkGetDeviceQueue": (None, [H, u32, u32, ptr]),
    "vkDeviceWaitIdle": (R, [H]),
    "vkCreateBuffer": (R, [H, ptr, ptr, ptr]),
    "vkDestroyBuffer": (None, [H, NH, ptr]),
    "vkGetBufferMemoryRequirements": (None, [H, NH, ptr]),
    "vkAllocateMemory": (R, [H, ptr, ptr, ptr]),
    "vkFreeMemory": (None, [H, NH, ptr]),
    "vkBindBufferMemory": (R, [H, NH, NH, u64]),
    "vkMapMemory": (R, [H, NH, u64, u64, u32, ptr]),
    "vkUnmapMemory": (None, [H, NH]),
    "vkGetBufferDeviceAddress": (u64, [H, ptr]),
    "vkCreateShaderModule": (R, [H, ptr, ptr, ptr]),
    "vkDestroyShaderModule": (None, [H, NH, ptr]),
    "vkCreatePipelineLayout": (R, [H, ptr, ptr, ptr]),
    "vkDestroyPipelineLayout": (None, [H, NH, ptr]),
    "vkCreatePipelineCache": (R, [H, ptr, ptr, ptr]),
    "vkGetPipelineCacheData": (R, [H, NH, ptr, ptr]),
    "vkDestroyPipelineCache": (None, [H, NH, ptr]),
    "vkCreateComputePipelines": (R, [H, NH, u32, ptr, ptr, ptr]),
    "vkDestroyPipeline": (None, [H, NH, ptr]),
    "vkCreateCommandPool": (R, [H, ptr, ptr, ptr]),
    "vkDestroyCommandPool": (None, [H, NH, ptr]),
    "vkAllocateCommandBuffers": (R, [H, ptr, ptr]),
    "vkBeginCommandBuffer": (R, [H, ptr]),
    "vkEndCommandBuffer": (R, [H]),
    "vkResetCommandBuffer": (R, [H, u32]),
    "vkCmdBindPipeline": (None, [H, u32, NH]),
    "vkCmdPushConstants": (None, [H, NH, u32, u32, u32, ptr]),
    "vkCmdDispatch": (None, [H, u32, u32, u32]),
    "vkCmdPipelineBarrier": (None, [H, u32, u32, u32, u32, ptr, u32, ptr, u32, ptr]),
    "vkCmdCopyBuffer": (None, [H, NH, NH, u32, ptr]),
    "vkCmdFillBuffer": (None, [H, NH, u64, u64, u32]),
    "vkCmdResetQueryPool": (None, [H, NH, u32, u32]),
    "vkCmdWriteTimestamp": (None, [H, u32, NH, u32]),
    "vkQueueSubmit": (R, [H, u32, ptr, NH]),
    "vkQueueWaitIdle": (R, [H]),
    "vkCreateFence": (R, [H, ptr, ptr, ptr]),
    "vkDestroyFence": (None, [H, NH, ptr]),
    "vkWaitForFences": (R, [H, u32, ptr, u32, u64]),
    "vkResetFences": (R, [H, u32, ptr]),
    "vkGetFenceStatus": (R, [H, NH]),
    "vkCreateQueryPool": (R, [H, ptr, ptr, ptr]),
    "vkDestroyQueryPool": (None, [H, NH, ptr]),
    "vkGetQueryPoolResults": (R, [H, NH, u32, u32, size_t, ptr, u64, u32]),
}


class VulkanError(RuntimeError):
    pass


def check(result: int, what: str) -> int:
    if result < 0:
        names = {-1: "OUT_OF_HOST_MEMORY", -2: "OUT_OF_DEVICE_MEMORY", -3: "INITIALIZATION_FAILED",
                 -4: "DEVICE_LOST", -5: "MEMORY_MAP_FAILED", -6: "LAYER_NOT_PRESENT",
                 -7: "EXTENSION_NOT_PRESENT", -8: "FEATURE_NOT_PRESENT",
                 -9: "INCOMPATIBLE_DRIVER", -13: "UNKNOWN"}
        raise VulkanError(f"{what} failed: VK_ERROR_{names.get(result, result)}")
    return result


class Funcs:
    """Entry points as attributes, bound with full signatures."""

    def __init__(self, getter, handle, table: dict, optional: dict | None = None):
        for name, (res, args) in table.items():
            addr = getter(handle, name.encode())
            if not addr:
                raise BackendUnavailable(f"helios: Vulkan entry point {name} missing")
            setattr(self, name[2:], ctypes.CFUNCTYPE(res, *args)(addr))
        for name, (res, args) in (optional or {}).items():
            addr = getter(handle, name.encode())
            setattr(self, name[2:], ctypes.CFUNCTYPE(res, *args)(addr) if addr else None)


_lib = None


def loader():
    """(vkGetInstanceProcAddr, vkCreateInstance, vkEnumerateInstanceVersion) from libvulkan."""
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("vulkan") or "libvulkan.so.1"
        try:
            _lib = ctypes.CDLL(name)
        except OSError as e:
            raise BackendUnavailable(
                f"helios: no Vulkan loader ({e}); install libvulkan1 and a driver "
                "(mesa-vulkan-drivers for lavapipe)") from None
    gipa = ctypes.CFUNCTYPE(c_void_p, H, ctypes.c_char_p)(("vkGetInstanceProcAddr", _lib))
    create = ctypes.CFUNCTYPE(R, ptr, ptr, ptr)(gipa(None, b"vkCreateInstance"))
    addr = gipa(None, b"vkEnumerateInstanceVersion")
    version = ctypes.CFUNCTYPE(R, ptr)(addr) if addr else None
    return gipa, create, version

