package main

// A subset of k8s.io/api apps/v1 Deployment and the runtime.Unknown envelope, with the field
// numbers and wire types of their generated.proto. Decoding goes through gogo protobuf's own
// table-driven proto.Unmarshal, which has the semantics of the generated code kube-apiserver runs:
// a singular embedded message that occurs twice is merged, an int32 keeps the low 32 bits of its
// varint, a repeated field appends, an unknown field is skipped (kept here in XXX_unrecognized,
// so the test can tell that the object Go sees is partial).

import (
	"bytes"
	"fmt"

	"github.com/gogo/protobuf/proto"
)

type Unknown struct {
	TypeMeta         *TypeMeta `protobuf:"bytes,1,opt,name=typeMeta" json:"typeMeta,omitempty"`
	Raw              []byte    `protobuf:"bytes,2,opt,name=raw" json:"-"`
	ContentEncoding  *string   `protobuf:"bytes,3,opt,name=contentEncoding" json:"contentEncoding,omitempty"`
	ContentType      *string   `protobuf:"bytes,4,opt,name=contentType" json:"contentType,omitempty"`
	XXX_unrecognized []byte    `json:"-"`
}

type TypeMeta struct {
	APIVersion       *string `protobuf:"bytes,1,opt,name=apiVersion" json:"apiVersion,omitempty"`
	Kind             *string `protobuf:"bytes,2,opt,name=kind" json:"kind,omitempty"`
	XXX_unrecognized []byte  `json:"-"`
}

type ObjectMeta struct {
	Name             *string           `protobuf:"bytes,1,opt,name=name" json:"name,omitempty"`
	Namespace        *string           `protobuf:"bytes,3,opt,name=namespace" json:"namespace,omitempty"`
	Labels           map[string]string `protobuf:"bytes,11,rep,name=labels" protobuf_key:"bytes,1,opt,name=key" protobuf_val:"bytes,2,opt,name=value" json:"labels,omitempty"`
	Annotations      map[string]string `protobuf:"bytes,12,rep,name=annotations" protobuf_key:"bytes,1,opt,name=key" protobuf_val:"bytes,2,opt,name=value" json:"annotations,omitempty"`
	XXX_unrecognized []byte            `json:"-"`
}

type Deployment struct {
	Metadata         *ObjectMeta     `protobuf:"bytes,1,opt,name=metadata" json:"metadata,omitempty"`
	Spec             *DeploymentSpec `protobuf:"bytes,2,opt,name=spec" json:"spec,omitempty"`
	XXX_unrecognized []byte          `json:"-"`
}

type DeploymentSpec struct {
	Replicas             *int32           `protobuf:"varint,1,opt,name=replicas" json:"replicas,omitempty"`
	Selector             *LabelSelector   `protobuf:"bytes,2,opt,name=selector" json:"selector,omitempty"`
	Template             *PodTemplateSpec `protobuf:"bytes,3,opt,name=template" json:"template,omitempty"`
	MinReadySeconds      *int32           `protobuf:"varint,5,opt,name=minReadySeconds" json:"minReadySeconds,omitempty"`
	RevisionHistoryLimit *int32           `protobuf:"varint,6,opt,name=revisionHistoryLimit" json:"revisionHistoryLimit,omitempty"`
	Paused               *bool            `protobuf:"varint,7,opt,name=paused" json:"paused,omitempty"`
	XXX_unrecognized     []byte           `json:"-"`
}

type LabelSelector struct {
	MatchLabels      map[string]string `protobuf:"bytes,1,rep,name=matchLabels" protobuf_key:"bytes,1,opt,name=key" protobuf_val:"bytes,2,opt,name=value" json:"matchLabels,omitempty"`
	XXX_unrecognized []byte            `json:"-"`
}

type PodTemplateSpec struct {
	Metadata         *ObjectMeta `protobuf:"bytes,1,opt,name=metadata" json:"metadata,omitempty"`
	Spec             *PodSpec    `protobuf:"bytes,2,opt,name=spec" json:"spec,omitempty"`
	XXX_unrecognized []byte      `json:"-"`
}

type PodSpec struct {
	Containers                    []*Container `protobuf:"bytes,2,rep,name=containers" json:"containers,omitempty"`
	TerminationGracePeriodSeconds *int64       `protobuf:"varint,4,opt,name=terminationGracePeriodSeconds" json:"terminationGracePeriodSeconds,omitempty"`
	XXX_unrecognized              []byte       `json:"-"`
}

type Container struct {
	Name             *string  `protobuf:"bytes,1,opt,name=name" json:"name,omitempty"`
	Image            *string  `protobuf:"bytes,2,opt,name=image" json:"image,omitempty"`
	Command          []string `protobuf:"bytes,3,rep,name=command" json:"command,omitempty"`
	XXX_unrecognized []byte   `json:"-"`
}

func (m *Unknown) Reset()                 { *m = Unknown{} }
func (m *Unknown) String() string         { return proto.CompactTextString(m) }
func (*Unknown) ProtoMessage()            {}
func (m *TypeMeta) Reset()                { *m = TypeMeta{} }
func (m *TypeMeta) String() string        { return proto.CompactTextString(m) }
func (*TypeMeta) ProtoMessage()           {}
func (m *ObjectMeta) Reset()              { *m = ObjectMeta{} }
func (m *ObjectMeta) String() string      { return proto.CompactTextString(m) }
func (*ObjectMeta) ProtoMessage()         {}
func (m *Deployment) Reset()              { *m = Deployment{} }
func (m *Deployment) String() string      { return proto.CompactTextString(m) }
func (*Deployment) ProtoMessage()         {}
func (m *DeploymentSpec) Reset()          { *m = DeploymentSpec{} }
func (m *DeploymentSpec) String() string  { return proto.CompactTextString(m) }
func (*DeploymentSpec) ProtoMessage()     {}
func (m *LabelSelector) Reset()           { *m = LabelSelector{} }
func (m *LabelSelector) String() string   { return proto.CompactTextString(m) }
func (*LabelSelector) ProtoMessage()      {}
func (m *PodTemplateSpec) Reset()         { *m = PodTemplateSpec{} }
func (m *PodTemplateSpec) String() string { return proto.CompactTextString(m) }
func (*PodTemplateSpec) ProtoMessage()    {}
func (m *PodSpec) Reset()                 { *m = PodSpec{} }
func (m *PodSpec) String() string         { return proto.CompactTextString(m) }
func (*PodSpec) ProtoMessage()            {}
func (m *Container) Reset()               { *m = Container{} }
func (m *Container) String() string       { return proto.CompactTextString(m) }
func (*Container) ProtoMessage()          {}

// partial reports whether any message in the object kept fields it does not know.
func (d *Deployment) partial() bool {
	if len(d.XXX_unrecognized) > 0 {
		return true
	}
	if m := d.Metadata; m != nil && len(m.XXX_unrecognized) > 0 {
		return true
	}
	s := d.Spec
	if s == nil {
		return false
	}
	if len(s.XXX_unrecognized) > 0 || (s.Selector != nil && len(s.Selector.XXX_unrecognized) > 0) {
		return true
	}
	if t := s.Template; t != nil {
		if len(t.XXX_unrecognized) > 0 || (t.Metadata != nil && len(t.Metadata.XXX_unrecognized) > 0) {
			return true
		}
		if p := t.Spec; p != nil {
			if len(p.XXX_unrecognized) > 0 {
				return true
			}
			for _, c := range p.Containers {
				if len(c.XXX_unrecognized) > 0 {
					return true
				}
			}
		}
	}
	return false
}

func decodeProto(data []byte) answer {
	magic := []byte("k8s\x00")
	if !bytes.HasPrefix(data, magic) {
		return answer{Error: "missing the k8s protobuf magic prefix"}
	}
	var envelope Unknown
	if err := proto.Unmarshal(data[len(magic):], &envelope); err != nil {
		return answer{Error: "envelope: " + err.Error()}
	}
	if envelope.TypeMeta == nil || envelope.TypeMeta.Kind == nil || *envelope.TypeMeta.Kind != "Deployment" {
		return answer{Error: fmt.Sprintf("not a Deployment: %v", envelope.TypeMeta)}
	}
	var obj Deployment
	if err := proto.Unmarshal(envelope.Raw, &obj); err != nil {
		return answer{Error: "object: " + err.Error()}
	}
	return answer{OK: true, Value: &obj, Unknown: obj.partial() || len(envelope.XXX_unrecognized) > 0}
}
