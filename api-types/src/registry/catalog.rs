//! The facts: every built-in resource a v1.33 API server serves, in
//! discovery order (core `v1` first, then the groups in `/apis` order, each
//! group-version's resources sorted by plural as discovery lists them).

use super::fields;
use super::printers::*;
use super::{ApiGroup, ResourceInfo, SubresourceInfo};

/// Discovery verbs of an ordinary persisted resource.
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Discovery verbs of a create-only virtual resource (reviews, bindings).
const CREATE: &[&str] = &["create"];
/// Discovery verbs of the `status` and `scale` subresources.
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
/// Discovery verbs of the `proxy` subresources.
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];
/// Discovery verbs of `attach`, `exec` and `portforward`.
const CONNECT_VERBS: &[&str] = &["create", "get"];

const ALL: &[&str] = &["all"];
const API_EXTENSIONS: &[&str] = &["api-extensions"];

/// The `status` subresource of a kind.
const fn status(group: &'static str, version: &'static str, kind: &'static str) -> SubresourceInfo {
    SubresourceInfo {
        name: "status",
        group,
        version,
        kind,
        verbs: GET_PATCH_UPDATE,
    }
}

/// The `scale` subresource, served as `autoscaling/v1` `Scale`.
const SCALE: SubresourceInfo = SubresourceInfo {
    name: "scale",
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    verbs: GET_PATCH_UPDATE,
};

/// Defaults shared by most entries; each entry overrides what differs.
const BASE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "",
    list_kind: "",
    plural: "",
    singular: "",
    short_names: &[],
    namespaced: true,
    verbs: ALL_VERBS,
    subresources: &[],
    categories: &[],
    storage_prefix: "",
    columns: DEFAULT_COLUMNS,
    field_selectors: fields::META,
    preferred: true,
};

pub(crate) static GROUPS: &[ApiGroup] = &[
    ApiGroup {
        name: "",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "apps",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "events.k8s.io",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "authentication.k8s.io",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "authorization.k8s.io",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "autoscaling",
        versions: &["v2", "v1"],
        preferred_version: "v2",
    },
    ApiGroup {
        name: "batch",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "certificates.k8s.io",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "networking.k8s.io",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "policy",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "rbac.authorization.k8s.io",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "storage.k8s.io",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "admissionregistration.k8s.io",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "apiextensions.k8s.io",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "scheduling.k8s.io",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "coordination.k8s.io",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "node.k8s.io",
        versions: &["v1"],
        preferred_version: "v1",
    },
    ApiGroup {
        name: "discovery.k8s.io",
        versions: &["v1"],
        preferred_version: "v1",
    },
];

/// The `autoscaling` HorizontalPodAutoscaler, identical in `v2` and `v1`.
const HPA: ResourceInfo = ResourceInfo {
    group: "autoscaling",
    version: "v2",
    kind: "HorizontalPodAutoscaler",
    list_kind: "HorizontalPodAutoscalerList",
    plural: "horizontalpodautoscalers",
    singular: "horizontalpodautoscaler",
    short_names: &["hpa"],
    categories: ALL,
    storage_prefix: "/registry/horizontalpodautoscalers",
    columns: HORIZONTAL_POD_AUTOSCALER_COLUMNS,
    ..BASE
};

pub(crate) static RESOURCES: &[ResourceInfo] = &[
    // ---- core/v1 ---------------------------------------------------------
    ResourceInfo {
        kind: "Binding",
        list_kind: "BindingList",
        plural: "bindings",
        singular: "binding",
        verbs: CREATE,
        field_selectors: &[],
        ..BASE
    },
    ResourceInfo {
        kind: "ComponentStatus",
        list_kind: "ComponentStatusList",
        plural: "componentstatuses",
        singular: "componentstatus",
        short_names: &["cs"],
        namespaced: false,
        verbs: &["get", "list"],
        columns: COMPONENT_STATUS_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        kind: "ConfigMap",
        list_kind: "ConfigMapList",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        storage_prefix: "/registry/configmaps",
        columns: CONFIG_MAP_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        kind: "Endpoints",
        list_kind: "EndpointsList",
        plural: "endpoints",
        singular: "endpoints",
        short_names: &["ep"],
        storage_prefix: "/registry/services/endpoints",
        columns: ENDPOINTS_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        kind: "Event",
        list_kind: "EventList",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        storage_prefix: "/registry/events",
        columns: EVENT_COLUMNS,
        field_selectors: fields::EVENT,
        ..BASE
    },
    ResourceInfo {
        kind: "LimitRange",
        list_kind: "LimitRangeList",
        plural: "limitranges",
        singular: "limitrange",
        short_names: &["limits"],
        storage_prefix: "/registry/limitranges",
        ..BASE
    },
    ResourceInfo {
        kind: "Namespace",
        list_kind: "NamespaceList",
        plural: "namespaces",
        singular: "namespace",
        short_names: &["ns"],
        namespaced: false,
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        subresources: &[
            SubresourceInfo {
                name: "finalize",
                group: "",
                version: "v1",
                kind: "Namespace",
                verbs: &["update"],
            },
            status("", "v1", "Namespace"),
        ],
        storage_prefix: "/registry/namespaces",
        columns: NAMESPACE_COLUMNS,
        field_selectors: fields::NAMESPACE,
        ..BASE
    },
    ResourceInfo {
        kind: "Node",
        list_kind: "NodeList",
        plural: "nodes",
        singular: "node",
        short_names: &["no"],
        namespaced: false,
        subresources: &[
            SubresourceInfo {
                name: "proxy",
                group: "",
                version: "v1",
                kind: "NodeProxyOptions",
                verbs: PROXY_VERBS,
            },
            status("", "v1", "Node"),
        ],
        storage_prefix: "/registry/minions",
        columns: NODE_COLUMNS,
        field_selectors: fields::NODE,
        ..BASE
    },
    ResourceInfo {
        kind: "PersistentVolumeClaim",
        list_kind: "PersistentVolumeClaimList",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        short_names: &["pvc"],
        subresources: &[status("", "v1", "PersistentVolumeClaim")],
        storage_prefix: "/registry/persistentvolumeclaims",
        columns: PERSISTENT_VOLUME_CLAIM_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        kind: "PersistentVolume",
        list_kind: "PersistentVolumeList",
        plural: "persistentvolumes",
        singular: "persistentvolume",
        short_names: &["pv"],
        namespaced: false,
        subresources: &[status("", "v1", "PersistentVolume")],
        storage_prefix: "/registry/persistentvolumes",
        columns: PERSISTENT_VOLUME_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        kind: "Pod",
        list_kind: "PodList",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        categories: ALL,
        subresources: &[
            SubresourceInfo {
                name: "attach",
                group: "",
                version: "v1",
                kind: "PodAttachOptions",
                verbs: CONNECT_VERBS,
            },
            SubresourceInfo {
                name: "binding",
                group: "",
                version: "v1",
                kind: "Binding",
                verbs: CREATE,
            },
            SubresourceInfo {
                name: "ephemeralcontainers",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: GET_PATCH_UPDATE,
            },
            SubresourceInfo {
                name: "eviction",
                group: "policy",
                version: "v1",
                kind: "Eviction",
                verbs: CREATE,
            },
            SubresourceInfo {
                name: "exec",
                group: "",
                version: "v1",
                kind: "PodExecOptions",
                verbs: CONNECT_VERBS,
            },
            SubresourceInfo {
                name: "log",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: &["get"],
            },
            SubresourceInfo {
                name: "portforward",
                group: "",
                version: "v1",
                kind: "PodPortForwardOptions",
                verbs: CONNECT_VERBS,
            },
            SubresourceInfo {
                name: "proxy",
                group: "",
                version: "v1",
                kind: "PodProxyOptions",
                verbs: PROXY_VERBS,
            },
            SubresourceInfo {
                name: "resize",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: GET_PATCH_UPDATE,
            },
            status("", "v1", "Pod"),
        ],
        storage_prefix: "/registry/pods",
        columns: POD_COLUMNS,
        field_selectors: fields::POD,
        ..BASE
    },
    ResourceInfo {
        kind: "PodTemplate",
        list_kind: "PodTemplateList",
        plural: "podtemplates",
        singular: "podtemplate",
        storage_prefix: "/registry/podtemplates",
        columns: POD_TEMPLATE_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        kind: "ReplicationController",
        list_kind: "ReplicationControllerList",
        plural: "replicationcontrollers",
        singular: "replicationcontroller",
        short_names: &["rc"],
        categories: ALL,
        subresources: &[SCALE, status("", "v1", "ReplicationController")],
        storage_prefix: "/registry/controllers",
        columns: REPLICATION_CONTROLLER_COLUMNS,
        field_selectors: fields::REPLICAS,
        ..BASE
    },
    ResourceInfo {
        kind: "ResourceQuota",
        list_kind: "ResourceQuotaList",
        plural: "resourcequotas",
        singular: "resourcequota",
        short_names: &["quota"],
        subresources: &[status("", "v1", "ResourceQuota")],
        storage_prefix: "/registry/resourcequotas",
        columns: RESOURCE_QUOTA_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        kind: "Secret",
        list_kind: "SecretList",
        plural: "secrets",
        singular: "secret",
        storage_prefix: "/registry/secrets",
        columns: SECRET_COLUMNS,
        field_selectors: fields::SECRET,
        ..BASE
    },
    ResourceInfo {
        kind: "ServiceAccount",
        list_kind: "ServiceAccountList",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        short_names: &["sa"],
        subresources: &[SubresourceInfo {
            name: "token",
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: CREATE,
        }],
        storage_prefix: "/registry/serviceaccounts",
        columns: SERVICE_ACCOUNT_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        kind: "Service",
        list_kind: "ServiceList",
        plural: "services",
        singular: "service",
        short_names: &["svc"],
        categories: ALL,
        subresources: &[
            SubresourceInfo {
                name: "proxy",
                group: "",
                version: "v1",
                kind: "ServiceProxyOptions",
                verbs: PROXY_VERBS,
            },
            status("", "v1", "Service"),
        ],
        storage_prefix: "/registry/services/specs",
        columns: SERVICE_COLUMNS,
        field_selectors: fields::SERVICE,
        ..BASE
    },
    // ---- apps/v1 ---------------------------------------------------------
    ResourceInfo {
        group: "apps",
        kind: "ControllerRevision",
        list_kind: "ControllerRevisionList",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        storage_prefix: "/registry/controllerrevisions",
        columns: CONTROLLER_REVISION_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "apps",
        kind: "DaemonSet",
        list_kind: "DaemonSetList",
        plural: "daemonsets",
        singular: "daemonset",
        short_names: &["ds"],
        categories: ALL,
        subresources: &[status("apps", "v1", "DaemonSet")],
        storage_prefix: "/registry/daemonsets",
        columns: DAEMON_SET_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "apps",
        kind: "Deployment",
        list_kind: "DeploymentList",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        categories: ALL,
        subresources: &[SCALE, status("apps", "v1", "Deployment")],
        storage_prefix: "/registry/deployments",
        columns: DEPLOYMENT_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "apps",
        kind: "ReplicaSet",
        list_kind: "ReplicaSetList",
        plural: "replicasets",
        singular: "replicaset",
        short_names: &["rs"],
        categories: ALL,
        subresources: &[SCALE, status("apps", "v1", "ReplicaSet")],
        storage_prefix: "/registry/replicasets",
        columns: REPLICA_SET_COLUMNS,
        field_selectors: fields::REPLICAS,
        ..BASE
    },
    ResourceInfo {
        group: "apps",
        kind: "StatefulSet",
        list_kind: "StatefulSetList",
        plural: "statefulsets",
        singular: "statefulset",
        short_names: &["sts"],
        categories: ALL,
        subresources: &[SCALE, status("apps", "v1", "StatefulSet")],
        storage_prefix: "/registry/statefulsets",
        columns: STATEFUL_SET_COLUMNS,
        ..BASE
    },
    // ---- events.k8s.io/v1 --------------------------------------------------
    ResourceInfo {
        group: "events.k8s.io",
        kind: "Event",
        list_kind: "EventList",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        storage_prefix: "/registry/events",
        columns: EVENT_COLUMNS,
        ..BASE
    },
    // ---- authentication.k8s.io/v1 ------------------------------------------
    ResourceInfo {
        group: "authentication.k8s.io",
        kind: "SelfSubjectReview",
        list_kind: "SelfSubjectReviewList",
        plural: "selfsubjectreviews",
        singular: "selfsubjectreview",
        namespaced: false,
        verbs: CREATE,
        field_selectors: &[],
        ..BASE
    },
    ResourceInfo {
        group: "authentication.k8s.io",
        kind: "TokenReview",
        list_kind: "TokenReviewList",
        plural: "tokenreviews",
        singular: "tokenreview",
        namespaced: false,
        verbs: CREATE,
        field_selectors: &[],
        ..BASE
    },
    // ---- authorization.k8s.io/v1 -------------------------------------------
    ResourceInfo {
        group: "authorization.k8s.io",
        kind: "LocalSubjectAccessReview",
        list_kind: "LocalSubjectAccessReviewList",
        plural: "localsubjectaccessreviews",
        singular: "localsubjectaccessreview",
        verbs: CREATE,
        field_selectors: &[],
        ..BASE
    },
    ResourceInfo {
        group: "authorization.k8s.io",
        kind: "SelfSubjectAccessReview",
        list_kind: "SelfSubjectAccessReviewList",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        namespaced: false,
        verbs: CREATE,
        field_selectors: &[],
        ..BASE
    },
    ResourceInfo {
        group: "authorization.k8s.io",
        kind: "SelfSubjectRulesReview",
        list_kind: "SelfSubjectRulesReviewList",
        plural: "selfsubjectrulesreviews",
        singular: "selfsubjectrulesreview",
        namespaced: false,
        verbs: CREATE,
        field_selectors: &[],
        ..BASE
    },
    ResourceInfo {
        group: "authorization.k8s.io",
        kind: "SubjectAccessReview",
        list_kind: "SubjectAccessReviewList",
        plural: "subjectaccessreviews",
        singular: "subjectaccessreview",
        namespaced: false,
        verbs: CREATE,
        field_selectors: &[],
        ..BASE
    },
    // ---- autoscaling/v2, autoscaling/v1 ------------------------------------
    ResourceInfo {
        subresources: &[status("autoscaling", "v2", "HorizontalPodAutoscaler")],
        ..HPA
    },
    ResourceInfo {
        version: "v1",
        subresources: &[status("autoscaling", "v1", "HorizontalPodAutoscaler")],
        preferred: false,
        ..HPA
    },
    // ---- batch/v1 ----------------------------------------------------------
    ResourceInfo {
        group: "batch",
        kind: "CronJob",
        list_kind: "CronJobList",
        plural: "cronjobs",
        singular: "cronjob",
        short_names: &["cj"],
        categories: ALL,
        subresources: &[status("batch", "v1", "CronJob")],
        storage_prefix: "/registry/cronjobs",
        columns: CRON_JOB_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "batch",
        kind: "Job",
        list_kind: "JobList",
        plural: "jobs",
        singular: "job",
        categories: ALL,
        subresources: &[status("batch", "v1", "Job")],
        storage_prefix: "/registry/jobs",
        columns: JOB_COLUMNS,
        field_selectors: fields::JOB,
        ..BASE
    },
    // ---- certificates.k8s.io/v1 --------------------------------------------
    ResourceInfo {
        group: "certificates.k8s.io",
        kind: "CertificateSigningRequest",
        list_kind: "CertificateSigningRequestList",
        plural: "certificatesigningrequests",
        singular: "certificatesigningrequest",
        short_names: &["csr"],
        namespaced: false,
        subresources: &[
            SubresourceInfo {
                name: "approval",
                group: "certificates.k8s.io",
                version: "v1",
                kind: "CertificateSigningRequest",
                verbs: GET_PATCH_UPDATE,
            },
            status("certificates.k8s.io", "v1", "CertificateSigningRequest"),
        ],
        storage_prefix: "/registry/certificatesigningrequests",
        columns: CERTIFICATE_SIGNING_REQUEST_COLUMNS,
        field_selectors: fields::CERTIFICATE_SIGNING_REQUEST,
        ..BASE
    },
    // ---- networking.k8s.io/v1 ----------------------------------------------
    ResourceInfo {
        group: "networking.k8s.io",
        kind: "IngressClass",
        list_kind: "IngressClassList",
        plural: "ingressclasses",
        singular: "ingressclass",
        namespaced: false,
        storage_prefix: "/registry/ingressclasses",
        columns: INGRESS_CLASS_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "networking.k8s.io",
        kind: "Ingress",
        list_kind: "IngressList",
        plural: "ingresses",
        singular: "ingress",
        short_names: &["ing"],
        subresources: &[status("networking.k8s.io", "v1", "Ingress")],
        storage_prefix: "/registry/ingress",
        columns: INGRESS_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "networking.k8s.io",
        kind: "IPAddress",
        list_kind: "IPAddressList",
        plural: "ipaddresses",
        singular: "ipaddress",
        short_names: &["ip"],
        namespaced: false,
        storage_prefix: "/registry/ipaddresses",
        columns: IP_ADDRESS_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "networking.k8s.io",
        kind: "NetworkPolicy",
        list_kind: "NetworkPolicyList",
        plural: "networkpolicies",
        singular: "networkpolicy",
        short_names: &["netpol"],
        storage_prefix: "/registry/networkpolicies",
        columns: NETWORK_POLICY_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "networking.k8s.io",
        kind: "ServiceCIDR",
        list_kind: "ServiceCIDRList",
        plural: "servicecidrs",
        singular: "servicecidr",
        namespaced: false,
        subresources: &[status("networking.k8s.io", "v1", "ServiceCIDR")],
        storage_prefix: "/registry/servicecidrs",
        columns: SERVICE_CIDR_COLUMNS,
        ..BASE
    },
    // ---- policy/v1 ---------------------------------------------------------
    ResourceInfo {
        group: "policy",
        kind: "PodDisruptionBudget",
        list_kind: "PodDisruptionBudgetList",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        short_names: &["pdb"],
        subresources: &[status("policy", "v1", "PodDisruptionBudget")],
        storage_prefix: "/registry/poddisruptionbudgets",
        columns: POD_DISRUPTION_BUDGET_COLUMNS,
        ..BASE
    },
    // ---- rbac.authorization.k8s.io/v1 --------------------------------------
    ResourceInfo {
        group: "rbac.authorization.k8s.io",
        kind: "ClusterRoleBinding",
        list_kind: "ClusterRoleBindingList",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        namespaced: false,
        storage_prefix: "/registry/clusterrolebindings",
        columns: CLUSTER_ROLE_BINDING_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        list_kind: "ClusterRoleList",
        plural: "clusterroles",
        singular: "clusterrole",
        namespaced: false,
        storage_prefix: "/registry/clusterroles",
        ..BASE
    },
    ResourceInfo {
        group: "rbac.authorization.k8s.io",
        kind: "RoleBinding",
        list_kind: "RoleBindingList",
        plural: "rolebindings",
        singular: "rolebinding",
        storage_prefix: "/registry/rolebindings",
        columns: ROLE_BINDING_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "rbac.authorization.k8s.io",
        kind: "Role",
        list_kind: "RoleList",
        plural: "roles",
        singular: "role",
        storage_prefix: "/registry/roles",
        ..BASE
    },
    // ---- storage.k8s.io/v1 -------------------------------------------------
    ResourceInfo {
        group: "storage.k8s.io",
        kind: "CSIDriver",
        list_kind: "CSIDriverList",
        plural: "csidrivers",
        singular: "csidriver",
        namespaced: false,
        storage_prefix: "/registry/csidrivers",
        columns: CSI_DRIVER_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "storage.k8s.io",
        kind: "CSINode",
        list_kind: "CSINodeList",
        plural: "csinodes",
        singular: "csinode",
        namespaced: false,
        storage_prefix: "/registry/csinodes",
        columns: CSI_NODE_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "storage.k8s.io",
        kind: "CSIStorageCapacity",
        list_kind: "CSIStorageCapacityList",
        plural: "csistoragecapacities",
        singular: "csistoragecapacity",
        storage_prefix: "/registry/csistoragecapacities",
        columns: CSI_STORAGE_CAPACITY_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "storage.k8s.io",
        kind: "StorageClass",
        list_kind: "StorageClassList",
        plural: "storageclasses",
        singular: "storageclass",
        short_names: &["sc"],
        namespaced: false,
        storage_prefix: "/registry/storageclasses",
        columns: STORAGE_CLASS_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "storage.k8s.io",
        kind: "VolumeAttachment",
        list_kind: "VolumeAttachmentList",
        plural: "volumeattachments",
        singular: "volumeattachment",
        namespaced: false,
        subresources: &[status("storage.k8s.io", "v1", "VolumeAttachment")],
        storage_prefix: "/registry/volumeattachments",
        columns: VOLUME_ATTACHMENT_COLUMNS,
        ..BASE
    },
    // ---- admissionregistration.k8s.io/v1 -----------------------------------
    ResourceInfo {
        group: "admissionregistration.k8s.io",
        kind: "MutatingWebhookConfiguration",
        list_kind: "MutatingWebhookConfigurationList",
        plural: "mutatingwebhookconfigurations",
        singular: "mutatingwebhookconfiguration",
        namespaced: false,
        categories: API_EXTENSIONS,
        storage_prefix: "/registry/mutatingwebhookconfigurations",
        columns: WEBHOOK_CONFIGURATION_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "admissionregistration.k8s.io",
        kind: "ValidatingAdmissionPolicy",
        list_kind: "ValidatingAdmissionPolicyList",
        plural: "validatingadmissionpolicies",
        singular: "validatingadmissionpolicy",
        namespaced: false,
        categories: API_EXTENSIONS,
        subresources: &[status(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
        )],
        storage_prefix: "/registry/validatingadmissionpolicies",
        columns: VALIDATING_ADMISSION_POLICY_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "admissionregistration.k8s.io",
        kind: "ValidatingAdmissionPolicyBinding",
        list_kind: "ValidatingAdmissionPolicyBindingList",
        plural: "validatingadmissionpolicybindings",
        singular: "validatingadmissionpolicybinding",
        namespaced: false,
        categories: API_EXTENSIONS,
        storage_prefix: "/registry/validatingadmissionpolicybindings",
        columns: VALIDATING_ADMISSION_POLICY_BINDING_COLUMNS,
        ..BASE
    },
    ResourceInfo {
        group: "admissionregistration.k8s.io",
        kind: "ValidatingWebhookConfiguration",
        list_kind: "ValidatingWebhookConfigurationList",
        plural: "validatingwebhookconfigurations",
        singular: "validatingwebhookconfiguration",
        namespaced: false,
        categories: API_EXTENSIONS,
        storage_prefix: "/registry/validatingwebhookconfigurations",
        columns: WEBHOOK_CONFIGURATION_COLUMNS,
        ..BASE
    },
    // ---- apiextensions.k8s.io/v1 -------------------------------------------
    ResourceInfo {
        group: "apiextensions.k8s.io",
        kind: "CustomResourceDefinition",
        list_kind: "CustomResourceDefinitionList",
        plural: "customresourcedefinitions",
        singular: "customresourcedefinition",
        short_names: &["crd", "crds"],
        namespaced: false,
        categories: API_EXTENSIONS,
        subresources: &[status(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )],
        storage_prefix: "/registry/apiextensions.k8s.io/customresourcedefinitions",
        ..BASE
    },
    // ---- scheduling.k8s.io/v1 ----------------------------------------------
    ResourceInfo {
        group: "scheduling.k8s.io",
        kind: "PriorityClass",
        list_kind: "PriorityClassList",
        plural: "priorityclasses",
        singular: "priorityclass",
        short_names: &["pc"],
        namespaced: false,
        storage_prefix: "/registry/priorityclasses",
        columns: PRIORITY_CLASS_COLUMNS,
        ..BASE
    },
    // ---- coordination.k8s.io/v1 --------------------------------------------
    ResourceInfo {
        group: "coordination.k8s.io",
        kind: "Lease",
        list_kind: "LeaseList",
        plural: "leases",
        singular: "lease",
        storage_prefix: "/registry/leases",
        columns: LEASE_COLUMNS,
        ..BASE
    },
    // ---- node.k8s.io/v1 ----------------------------------------------------
    ResourceInfo {
        group: "node.k8s.io",
        kind: "RuntimeClass",
        list_kind: "RuntimeClassList",
        plural: "runtimeclasses",
        singular: "runtimeclass",
        namespaced: false,
        storage_prefix: "/registry/runtimeclasses",
        columns: RUNTIME_CLASS_COLUMNS,
        ..BASE
    },
    // ---- discovery.k8s.io/v1 -----------------------------------------------
    ResourceInfo {
        group: "discovery.k8s.io",
        kind: "EndpointSlice",
        list_kind: "EndpointSliceList",
        plural: "endpointslices",
        singular: "endpointslice",
        storage_prefix: "/registry/endpointslices",
        columns: ENDPOINT_SLICE_COLUMNS,
        ..BASE
    },
];
