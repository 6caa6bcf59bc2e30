//! Turns the user an SDK sends into the evaluation context the engine reads (spec §7.4).
//!
//! `{"user_id":..,"groups":{"org":["acme"]},"group_properties":{"org":{"acme":{..}}},..}`
//! becomes `{"user":{"user_id":..,..},"groups":{"org":{"group_name":"acme","group_properties":{..}}}}`.

use crate::amplitude::engine::{map_with_capacity, Map, Value};

/// Builds the evaluation context from a user object. An empty user gives `{}` (no `user` key),
/// as the reference does.
///
/// Groups: for each group type, the first group name is used (a plain string is accepted too).
/// `group_properties[type][name]` and `group_cohort_ids[type][name]` are attached to the group
/// when they are non-empty. `groups`, `group_properties` and `group_cohort_ids` are removed from
/// the user, the rest of the user is kept verbatim.
pub fn user_to_context(mut user: Map) -> Value {
    let mut context = map_with_capacity(2);
    if user.is_empty() {
        return Value::Object(context);
    }
    let groups = user.shift_remove("groups");
    let properties = user.shift_remove("group_properties");
    let cohort_ids = user.shift_remove("group_cohort_ids");
    let groups = groups
        .map(|g| build_groups(g, properties, cohort_ids))
        .unwrap_or_default();
    context.insert("user".to_owned(), Value::Object(user));
    if !groups.is_empty() {
        context.insert("groups".to_owned(), Value::Object(groups));
    }
    Value::Object(context)
}

/// Everything is taken by value so that group types, names, properties and cohort ids are
/// moved into the context rather than copied (they are per-request data).
fn build_groups(
    groups: Value,
    mut properties: Option<Value>,
    mut cohort_ids: Option<Value>,
) -> Map {
    let Value::Object(groups) = groups else {
        return Map::default();
    };
    let mut built = map_with_capacity(groups.len());
    for (group_type, names) in groups {
        let Some(name) = into_first_group_name(names) else {
            continue;
        };
        let props = take(&mut properties, &group_type, &name).filter(non_empty_object);
        let ids = take(&mut cohort_ids, &group_type, &name).filter(non_empty_array);
        let mut node = map_with_capacity(3);
        node.insert("group_name".to_owned(), Value::String(name));
        if let Some(props) = props {
            node.insert("group_properties".to_owned(), props);
        }
        if let Some(ids) = ids {
            node.insert("cohort_ids".to_owned(), ids);
        }
        built.insert(group_type, Value::Object(node));
    }
    built
}

/// [`first_group_name`], moving the name out.
fn into_first_group_name(names: Value) -> Option<String> {
    match names {
        Value::String(name) => Some(name),
        Value::Array(names) => match names.into_iter().next() {
            Some(Value::String(name)) => Some(name),
            _ => None,
        },
        _ => None,
    }
}

/// SDKs send `{"type": ["name", ..]}`; a bare string is accepted as the one name.
pub(crate) fn first_group_name(names: &Value) -> Option<&str> {
    match names {
        Value::String(name) => Some(name),
        Value::Array(names) => match names.first() {
            Some(Value::String(name)) => Some(name),
            _ => None,
        },
        _ => None,
    }
}

/// Moves `map[group_type][group_name]` out (each group type is visited once, so nothing
/// that is still needed is taken).
fn take(map: &mut Option<Value>, group_type: &str, name: &str) -> Option<Value> {
    let Some(Value::Object(by_type)) = map else {
        return None;
    };
    let Some(Value::Object(by_name)) = by_type.get_mut(group_type) else {
        return None;
    };
    by_name.get_mut(name).map(std::mem::take)
}

fn non_empty_object(value: &Value) -> bool {
    matches!(value, Value::Object(map) if !map.is_empty())
}

fn non_empty_array(value: &Value) -> bool {
    matches!(value, Value::Array(items) if !items.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> Map {
        match Value::from_json_slice(json.as_bytes()).unwrap() {
            Value::Object(map) => map,
            other => panic!("not an object: {other:?}"),
        }
    }

    fn context_json(user: &str) -> String {
        user_to_context(object(user)).to_json_string()
    }

    #[test]
    fn empty_user_gives_empty_context() {
        assert_eq!(context_json("{}"), "{}");
    }

    #[test]
    fn groups_move_out_of_the_user() {
        let context = context_json(
            r#"{"user_id":"u","groups":{"org":["acme","other"],"team":"core"},
                "group_properties":{"org":{"acme":{"plan":"ent"}}},
                "group_cohort_ids":{"org":{"acme":["c1"]}}}"#,
        );
        assert_eq!(
            context,
            r#"{"user":{"user_id":"u"},"groups":{"org":{"group_name":"acme","group_properties":{"plan":"ent"},"cohort_ids":["c1"]},"team":{"group_name":"core"}}}"#
        );
    }

    #[test]
    fn null_groups_and_non_string_names_are_skipped() {
        assert_eq!(
            context_json(r#"{"device_id":"d","groups":null,"group_properties":null}"#),
            r#"{"user":{"device_id":"d"}}"#
        );
        assert_eq!(
            context_json(r#"{"user_id":"u","groups":{"org":[1],"x":[]}}"#),
            r#"{"user":{"user_id":"u"}}"#
        );
    }
}
